"""BERT-family encoders (BERT, MiniLM, ...) loaded from a local Hugging Face model directory.

Written in the project, like EfficientNet-Lite, so every encoder layer is a plain module the adapter
surgery can wrap and that exports to clean ONNX. Weight names follow Hugging Face's ``BertModel`` so its
``model.safetensors`` loads key for key; ``tests/test_bert.py`` checks the outputs against ``transformers``.
"""
from __future__ import annotations

import json
import math
from dataclasses import dataclass, fields
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from ..errors import UserError

WEIGHT_FILES = ("model.safetensors", "pytorch_model.bin")
TOKENIZER_FILE = "tokenizer.json"


@dataclass(frozen=True)
class BertConfig:
    """The fields of a Hugging Face ``config.json`` that shape the encoder."""

    vocab_size: int
    hidden_size: int
    num_hidden_layers: int
    num_attention_heads: int
    intermediate_size: int
    max_position_embeddings: int = 512
    type_vocab_size: int = 2
    layer_norm_eps: float = 1e-12
    hidden_act: str = "gelu"

    @classmethod
    def from_dir(cls, model_dir: Path) -> BertConfig:
        path = model_dir / "config.json"
        try:
            raw = json.loads(path.read_text())
        except (OSError, json.JSONDecodeError) as exc:
            raise UserError(f"{path} is missing or unreadable ({exc.__class__.__name__}); pass a Hugging Face "
                            "model directory (config.json, model.safetensors, tokenizer.json)") from None
        if raw.get("model_type") not in ("bert", None) or raw.get("hidden_act", "gelu") != "gelu":
            raise UserError(f"{path}: only BERT-family encoders with GELU are supported, got model_type "
                            f"{raw.get('model_type')!r}, hidden_act {raw.get('hidden_act')!r}")
        try:
            return cls(**{f.name: raw[f.name] for f in fields(cls) if f.name in raw})
        except TypeError as exc:
            raise UserError(f"{path} lacks a field the encoder needs ({exc})") from None


class BertEmbeddings(nn.Module):
    """Word + position + token-type embeddings, then LayerNorm."""

    def __init__(self, cfg: BertConfig):
        super().__init__()
        self.word_embeddings = nn.Embedding(cfg.vocab_size, cfg.hidden_size)
        self.position_embeddings = nn.Embedding(cfg.max_position_embeddings, cfg.hidden_size)
        self.token_type_embeddings = nn.Embedding(cfg.type_vocab_size, cfg.hidden_size)
        self.LayerNorm = nn.LayerNorm(cfg.hidden_size, eps=cfg.layer_norm_eps)

    def forward(self, input_ids: torch.Tensor) -> torch.Tensor:
        positions = torch.arange(input_ids.shape[1], device=input_ids.device)
        h = self.word_embeddings(input_ids) + self.position_embeddings(positions)[None]
        return self.LayerNorm(h + self.token_type_embeddings.weight[0])  # one segment: token type 0


class _Dense(nn.Module):
    """``dense`` then (optionally) LayerNorm of the residual sum: Hugging Face's ``*Output`` modules."""

    def __init__(self, n_in: int, n_out: int, eps: float | None):
        super().__init__()
        self.dense = nn.Linear(n_in, n_out)
        if eps is not None:
            self.LayerNorm = nn.LayerNorm(n_out, eps=eps)


class BertSelfAttention(nn.Module):
    def __init__(self, cfg: BertConfig):
        super().__init__()
        self.heads = cfg.num_attention_heads
        self.query = nn.Linear(cfg.hidden_size, cfg.hidden_size)
        self.key = nn.Linear(cfg.hidden_size, cfg.hidden_size)
        self.value = nn.Linear(cfg.hidden_size, cfg.hidden_size)

    def forward(self, h: torch.Tensor, bias: torch.Tensor) -> torch.Tensor:
        n, t, d = h.shape
        split = lambda y: y.reshape(n, t, self.heads, d // self.heads).transpose(1, 2)  # noqa: E731
        q, k, v = split(self.query(h)), split(self.key(h)), split(self.value(h))
        scores = q @ k.transpose(-1, -2) / math.sqrt(d // self.heads) + bias
        return (scores.softmax(-1) @ v).transpose(1, 2).reshape(n, t, d)


class BertAttention(nn.Module):
    def __init__(self, cfg: BertConfig):
        super().__init__()
        self.self = BertSelfAttention(cfg)
        self.output = _Dense(cfg.hidden_size, cfg.hidden_size, cfg.layer_norm_eps)


class BertLayer(nn.Module):
    """One post-LayerNorm encoder layer; same shape in and out, so it is gateable."""

    def __init__(self, cfg: BertConfig):
        super().__init__()
        self.attention = BertAttention(cfg)
        self.intermediate = _Dense(cfg.hidden_size, cfg.intermediate_size, None)
        self.output = _Dense(cfg.intermediate_size, cfg.hidden_size, cfg.layer_norm_eps)

    def forward(self, h: torch.Tensor, bias: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        """``bias`` ``[N, 1, 1, T]`` is 0 on real tokens and very negative on padding (``mask`` is unused here)."""
        out = self.attention.output
        a = out.LayerNorm(out.dense(self.attention.self(h, bias)) + h)
        f = self.output.dense(F.gelu(self.intermediate.dense(a)))
        return self.output.LayerNorm(f + a)


class BertEncoder(nn.Module):
    """Embeddings and encoder layers; ``layers`` are what the surgery gates (one gate per layer)."""

    def __init__(self, cfg: BertConfig):
        super().__init__()
        self.cfg = cfg
        self.embeddings = BertEmbeddings(cfg)
        self.layers = nn.ModuleList(BertLayer(cfg) for _ in range(cfg.num_hidden_layers))

    @property
    def num_features(self) -> int:
        return self.cfg.hidden_size

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        h = self.embeddings(input_ids)
        bias = attention_bias(attention_mask)
        for layer in self.layers:
            h = layer(h, bias)
        return h


def attention_bias(attention_mask: torch.Tensor) -> torch.Tensor:
    """``[N, T]`` 1/0 mask -> ``[N, 1, 1, T]`` additive bias (0 or -1e4, as ``transformers`` used for fp32)."""
    return (1.0 - attention_mask.to(torch.float32))[:, None, None, :] * -1e4


def masked_mean(h: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Mean over real tokens: ``[N, T, D]`` with ``[N, T, 1]`` float mask -> ``[N, D]``."""
    return (h * mask).sum(1) / mask.sum(1).clamp_min(1.0)


def _weights_file(model_dir: Path) -> Path:
    for name in WEIGHT_FILES:
        if (model_dir / name).exists():
            return model_dir / name
    raise UserError(f"{model_dir} holds none of {', '.join(WEIGHT_FILES)}; pass a Hugging Face model directory")


def load_state(path: Path) -> dict[str, torch.Tensor]:
    """Weights from safetensors, or from a PyTorch file without unpickling code (``weights_only``)."""
    try:
        if path.suffix == ".safetensors":
            from safetensors.torch import load_file
            return load_file(str(path))
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # safetensors and torch raise several types for a corrupt file
        raise UserError(f"{path} is not a readable weights file ({str(exc).splitlines()[0][:120]})") from None


def bert_encoder(model_dir: str | Path, pretrained: bool = True) -> BertEncoder:
    """Build the encoder a Hugging Face directory describes and load its weights, every key accounted for."""
    model_dir = Path(model_dir)
    if not model_dir.is_dir():
        raise UserError(f"backbone directory {model_dir} does not exist; pass a Hugging Face model directory")
    encoder = BertEncoder(BertConfig.from_dir(model_dir))
    if not pretrained:
        return encoder
    state = {k.removeprefix("bert."): v for k, v in load_state(_weights_file(model_dir)).items()}
    state = {k.replace("encoder.layer.", "layers."): v for k, v in state.items()
             if not k.startswith(("pooler.", "cls.")) and k != "embeddings.position_ids"}
    missing, unexpected = encoder.load_state_dict(state, strict=False)
    if missing or unexpected:
        raise UserError(f"{model_dir}: weights do not fit the encoder (missing {missing[:3]}, unexpected "
                        f"{unexpected[:3]})")
    return encoder


def write_tiny_bert(model_dir: Path, vocab: list[str], hidden: int = 32, layers: int = 2, heads: int = 4,
                    seed: int = 0) -> Path:
    """A small random BERT directory (config, safetensors, WordPiece tokenizer) built offline, for tests."""
    from safetensors.torch import save_file
    from tokenizers import Tokenizer, models, normalizers, pre_tokenizers, processors

    model_dir.mkdir(parents=True, exist_ok=True)
    specials = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
    words = specials + [w for w in dict.fromkeys(vocab) if w not in specials]
    cfg = {"model_type": "bert", "vocab_size": len(words), "hidden_size": hidden, "num_hidden_layers": layers,
           "num_attention_heads": heads, "intermediate_size": 4 * hidden, "max_position_embeddings": 128,
           "type_vocab_size": 2, "layer_norm_eps": 1e-12, "hidden_act": "gelu", "pad_token_id": 0}
    (model_dir / "config.json").write_text(json.dumps(cfg, indent=2))
    torch.manual_seed(seed)
    encoder = BertEncoder(BertConfig.from_dir(model_dir))
    state = {k.replace("layers.", "encoder.layer."): v.contiguous() for k, v in encoder.state_dict().items()}
    save_file(state, str(model_dir / "model.safetensors"))
    tok = Tokenizer(models.WordPiece({w: i for i, w in enumerate(words)}, unk_token="[UNK]"))
    tok.normalizer = normalizers.BertNormalizer(lowercase=True)
    tok.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    tok.post_processor = processors.TemplateProcessing(single="[CLS] $A [SEP]", special_tokens=[("[CLS]", 2), ("[SEP]", 3)])
    tok.save(str(model_dir / TOKENIZER_FILE))
    return model_dir
