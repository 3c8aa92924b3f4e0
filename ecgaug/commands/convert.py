"""``ecgaug convert``: DiffuSETS' published checkpoints → an ecgaug model folder (safetensors)."""
from __future__ import annotations

from pathlib import Path


def register(subparsers) -> None:
    parser = subparsers.add_parser(
        "convert", help="convert the published DiffuSETS weights into an ecgaug model folder",
        description="Read vae_model.pth and unet_all.pth (Hugging Face Laiyf/DiffuSETS) with weights_only loading and "
                    "write a folder that DiffuSETSPipeline.from_pretrained reads (safetensors + configs).",
    )
    parser.add_argument("upstream", type=Path, help="folder with vae_model.pth and unet_all.pth")
    parser.add_argument("output_dir", type=Path)
    parser.add_argument("--text_encoder", default="openai", choices=["openai", "table"],
                        help="how the folder says to embed reports (default OpenAI text-embedding-ada-002, as published)")
    parser.add_argument("--text_table", type=Path, default=None, help="with --text_encoder table: path of ptbxl_text_embed.csv")
    parser.set_defaults(func=run)


def run(args) -> int:
    from ecgaug.pipeline import DiffuSETSPipeline

    if args.text_encoder == "table" and args.text_table is None:
        raise SystemExit("--text_encoder table needs --text_table PATH (the published ptbxl_text_embed.csv).")
    pipe = DiffuSETSPipeline.from_upstream(args.upstream, text_encoder=_NoTextEncoder())
    spec = {"type": "openai", "model": "text-embedding-ada-002"} if args.text_encoder == "openai" else {"type": "table", "path": str(args.text_table.resolve())}
    pipe.save_pretrained(args.output_dir, text_encoder_spec=spec)
    print(f"Converted {args.upstream} → {args.output_dir} ({pipe.model_id})")
    return 0


class _NoTextEncoder:
    """Conversion embeds nothing; stands in for the text encoder so no API key is needed."""

    name = "none"
    embedding_dim = 1536
