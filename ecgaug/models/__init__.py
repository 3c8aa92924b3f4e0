"""DiffuSETS components: the ECG VAE and the conditional latent UNet."""
from ecgaug.models.unet import PATIENT_FEATURES, ConditionalUNet1D, UNetConfig
from ecgaug.models.vae import ECGVAE, LatentDistribution, VAEConfig

__all__ = ["ECGVAE", "VAEConfig", "LatentDistribution", "ConditionalUNet1D", "UNetConfig", "PATIENT_FEATURES"]
