"""Text conditioning: report text, the DiffuSETS prompt and text encoders.

Flow: SCP codes --:class:`ReportTemplater`--> ``"line|line"`` report --:func:`build_prompt`-->
prompt string --:class:`TextEncoder`--> embedding ``(1, embedding_dim)`` for the UNet.

Heavy dependencies (``openai``, ``sentence_transformers``) are imported only when an encoder
that needs them is built.
"""
from .cache import CachedTextEncoder
from .encoders import TEXT_ENCODER_NAMES, TextEncoder, get_text_encoder
from .minilm import MiniLMTextEncoder
from .openai_encoder import OPENAI_EMBEDDING_DIMS, OpenAITextEncoder
from .prompt import build_prompt, ordinal, split_report
from .reports import LabelStatistics, ReportTemplater, UnknownCodeError
from .table import MissingEmbeddingError, TableTextEncoder

__all__ = [
    "OPENAI_EMBEDDING_DIMS",
    "TEXT_ENCODER_NAMES",
    "CachedTextEncoder",
    "LabelStatistics",
    "MiniLMTextEncoder",
    "MissingEmbeddingError",
    "OpenAITextEncoder",
    "ReportTemplater",
    "TableTextEncoder",
    "TextEncoder",
    "UnknownCodeError",
    "build_prompt",
    "get_text_encoder",
    "ordinal",
    "split_report",
]
