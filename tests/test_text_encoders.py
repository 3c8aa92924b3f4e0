import numpy as np
import pytest
import torch

from ecgaug.text import (
    CachedTextEncoder,
    MiniLMTextEncoder,
    MissingEmbeddingError,
    TableTextEncoder,
    TextEncoder,
    build_prompt,
    get_text_encoder,
)


class CountingEncoder(TextEncoder):
    """Deterministic 3-d fake that records every call it receives."""

    name = "counting:v1"
    embedding_dim = 3

    def __init__(self):
        self.calls: list[list[str]] = []

    def _encode(self, texts, show_progress=False):
        self.calls.append(list(texts))
        return np.array([[len(t), t.count("a"), sum(map(ord, t)) % 97] for t in texts], dtype=np.float32)


def expected(texts):
    return torch.tensor([[len(t), t.count("a"), sum(map(ord, t)) % 97] for t in texts], dtype=torch.float32)


# ----------------------------------------------------------------------------- TextEncoder


def test_encode_returns_float32_rows_in_order():
    out = CountingEncoder().encode(["aa", "b", "aa"])
    assert out.dtype == torch.float32 and out.shape == (3, 3)
    torch.testing.assert_close(out, expected(["aa", "b", "aa"]))


def test_encode_empty_list_gives_empty_tensor_without_calling_backend():
    encoder = CountingEncoder()
    assert encoder.encode([]).shape == (0, 3)
    assert encoder.calls == []


def test_encode_rejects_a_single_string_and_empty_strings():
    with pytest.raises(TypeError, match="single string"):
        CountingEncoder().encode("sinus rhythm")
    with pytest.raises(ValueError, match=r"texts\[1\]"):
        CountingEncoder().encode(["ok", "  "])


# ----------------------------------------------------------------------------- table


def write_table(path, rows):
    import csv

    with open(path, "w", newline="") as file:
        writer = csv.writer(file)
        writer.writerow(["text", "embed"])
        writer.writerows(rows)
    return path


@pytest.fixture
def table_path(tmp_path):
    prompts = [build_prompt("sinus rhythm"), build_prompt("sinus rhythm|left axis deviation")]
    return write_table(tmp_path / "ptbxl_text_embed.csv", [(prompts[0], "[0.5, -1.25, 2e-3]"), (prompts[1], "[1.0 2.0 3.0]")])


def test_table_looks_up_exact_texts(table_path):
    encoder = TableTextEncoder(table_path)
    assert encoder.name == "table:ptbxl_text_embed.csv"
    assert encoder.embedding_dim == 3 and len(encoder) == 2
    texts = [build_prompt("sinus rhythm|left axis deviation"), build_prompt("sinus rhythm")]
    torch.testing.assert_close(encoder.encode(texts), torch.tensor([[1.0, 2.0, 3.0], [0.5, -1.25, 2e-3]]))


def test_table_missing_text_is_an_error_naming_text_and_file(table_path):
    encoder = TableTextEncoder(table_path)
    with pytest.raises(MissingEmbeddingError) as info:
        encoder.encode([build_prompt("sinus rhythm"), "atrial fibrillation " * 20])
    message = str(info.value)
    assert isinstance(info.value, KeyError)
    assert "atrial fibrillation atrial" in message and "..." in message
    assert "ptbxl_text_embed.csv" in message


def test_table_never_evaluates_code(tmp_path):
    path = write_table(tmp_path / "evil.csv", [("a", "[__import__('os').getpid()]")])
    with pytest.raises(ValueError, match="only numbers"):
        TableTextEncoder(path)


@pytest.mark.parametrize(
    "rows, match",
    [
        ([("a", "0.1, 0.2")], "like '\\[0.1"),
        ([("a", "[0.1, 0.2]"), ("b", "[0.1]")], "should all have 2 values"),
        ([("a", "[0.1, 0.2]"), ("a", "[0.3, 0.2]")], "different embedding"),
    ],
)
def test_table_rejects_malformed_files(tmp_path, rows, match):
    with pytest.raises(ValueError, match=match):
        TableTextEncoder(write_table(tmp_path / "t.csv", rows))


def test_table_missing_file_and_columns(tmp_path):
    with pytest.raises(FileNotFoundError, match="DiffuSETS"):
        TableTextEncoder(tmp_path / "absent.csv")
    (tmp_path / "bad.csv").write_text("prompt,embed\na,[1]\n")
    with pytest.raises(ValueError, match="lacks \\['text'\\]"):
        TableTextEncoder(tmp_path / "bad.csv")


# ----------------------------------------------------------------------------- cache


def test_cache_computes_each_text_once_across_calls_and_instances(tmp_path):
    inner = CountingEncoder()
    cached = CachedTextEncoder(inner, tmp_path / "cache")
    assert cached.name == inner.name and cached.embedding_dim == 3

    first = cached.encode(["aa", "b", "aa"])
    assert inner.calls == [["aa", "b"]]  # distinct misses, one batched call
    torch.testing.assert_close(first, expected(["aa", "b", "aa"]))

    second = cached.encode(["b", "aa"])
    assert inner.calls == [["aa", "b"]]  # nothing computed
    torch.testing.assert_close(second, expected(["b", "aa"]))

    other_inner = CountingEncoder()
    reopened = CachedTextEncoder(other_inner, tmp_path / "cache")
    third = reopened.encode(["aa", "ccc", "b"])
    assert other_inner.calls == [["ccc"]]  # only the miss is forwarded
    assert (reopened.num_loaded, reopened.num_computed) == (2, 1)
    torch.testing.assert_close(third, expected(["aa", "ccc", "b"]))


def test_cache_is_keyed_by_encoder_name(tmp_path):
    CachedTextEncoder(CountingEncoder(), tmp_path).encode(["aa"])
    renamed = CountingEncoder()
    renamed.name = "counting:v2"
    CachedTextEncoder(renamed, tmp_path).encode(["aa"])
    assert renamed.calls == [["aa"]]


def test_cache_files_are_plain_npy_and_leave_no_temporaries(tmp_path):
    cached = CachedTextEncoder(CountingEncoder(), tmp_path)
    cached.encode(["aa", "b"])
    files = sorted(p.name for p in cached.folder.rglob("*") if p.is_file())
    assert len([f for f in files if f.endswith(".npy")]) == 2 and "encoder.json" in files
    assert not [f for f in files if f.endswith(".tmp")]
    np.testing.assert_array_equal(np.load(cached.path_for("aa"), allow_pickle=False), expected(["aa"])[0].numpy())


def test_cache_reports_a_corrupt_file(tmp_path):
    cached = CachedTextEncoder(CountingEncoder(), tmp_path)
    cached.encode(["aa"])
    np.save(cached.path_for("aa"), np.zeros(5, dtype=np.float32))
    with pytest.raises(RuntimeError, match="delete it"):
        cached.encode(["aa"])


# ----------------------------------------------------------------------------- factory


def test_factory_builds_table_encoder_with_cache_and_drops_none_kwargs(table_path, tmp_path):
    encoder = get_text_encoder("table", path=table_path, cache_dir=tmp_path / "cache")
    assert isinstance(encoder, CachedTextEncoder) and isinstance(encoder.encoder, TableTextEncoder)
    assert isinstance(get_text_encoder("minilm", device=None), MiniLMTextEncoder)


def test_factory_unknown_name_lists_valid_names():
    with pytest.raises(ValueError, match=r"'clip'.*\['openai', 'minilm', 'table'\]"):
        get_text_encoder("clip")


# ----------------------------------------------------------------------------- MiniLM (real model, loaded once)


def test_minilm_real_model():
    encoder = MiniLMTextEncoder(device="cpu")
    assert encoder.embedding_dim == 384 and encoder._model is None  # lazy
    texts = ["sinus tachycardia with left bundle branch block", "sinus rhythm with left bundle branch block", "the invoice is due next week"]
    out = encoder.encode(texts)
    assert out.shape == (3, 384) and out.dtype == torch.float32
    torch.testing.assert_close(out.norm(dim=1), torch.ones(3))
    similar, unrelated = out[0] @ out[1], out[0] @ out[2]
    assert similar > unrelated + 0.2
