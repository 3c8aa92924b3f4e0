"""ecgaug: DiffuSETS synthetic ECGs for class-balanced augmentation of 12-lead ECG data sets."""
__version__ = "0.1.0"
