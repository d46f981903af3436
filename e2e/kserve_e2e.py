#!/usr/bin/env python3
"""Models and loaders of e2e/run.sh beyond MLServer, run with the KServe venv
(requirements-kserve.txt).

    kserve_e2e.py fetch URI OUT            KServe's oci+fetch handler, as the storage initializer
                                           calls it: Storage.download(URI, OUT)
    kserve_e2e.py make-llm DIR ORIG.npz    a tiny Llama-style model in DIR: config.json, a
                                           tokenizer trained on a few lines, random weights in two
                                           safetensors shards and their index; the tensors also
                                           saved in ORIG.npz
    kserve_e2e.py check-llm DIR ORIG.npz   load DIR with transformers' AutoConfig and
                                           AutoTokenizer, and read every tensor of the index with
                                           safetensors: each must equal the original
    kserve_e2e.py make-onnx DIR            DIR/1/model.onnx (the version directory KServe's
                                           OpenVINO runtime loads), made with onnx.helper:
                                           Y = X @ W + B
    kserve_e2e.py check-onnx DIR           run DIR/1/model.onnx with onnxruntime: the expected Y

No PyTorch: the weights are numpy arrays written with safetensors. Prints one line of what was
checked; exits non-zero with the reason otherwise.
"""

import json
import os
import sys

import numpy as np

LINES = [
    "modelcar packs machine learning models into OCI images.",
    "KServe serves the model from the image through a sidecar.",
    "The tokenizer is trained on these few lines only.",
    "Every tensor must read back exactly as it was written.",
]
SHARDS = ["model-00001-of-00002.safetensors", "model-00002-of-00002.safetensors"]


def fetch(uri, out):
    from kserve_storage import Storage

    path = Storage.download(uri, out)
    files = sorted(os.path.relpath(os.path.join(d, f), path)
                   for d, _, fs in os.walk(path) for f in fs)
    print(f"Storage.download({uri}) -> {path}: {' '.join(files)}")


def llm_tensors(config):
    """Random weights with a Llama model's names and shapes, float32 (float16 for the norms, so
    that more than one dtype goes through)."""
    rng = np.random.default_rng(20261128)
    h, i, v = config.hidden_size, config.intermediate_size, config.vocab_size
    kv = config.num_key_value_heads * (h // config.num_attention_heads)
    t = {"model.embed_tokens.weight": (v, h), "model.norm.weight": (h,), "lm_head.weight": (v, h)}
    for n in range(config.num_hidden_layers):
        p = f"model.layers.{n}."
        t.update({
            p + "self_attn.q_proj.weight": (h, h), p + "self_attn.k_proj.weight": (kv, h),
            p + "self_attn.v_proj.weight": (kv, h), p + "self_attn.o_proj.weight": (h, h),
            p + "mlp.gate_proj.weight": (i, h), p + "mlp.up_proj.weight": (i, h),
            p + "mlp.down_proj.weight": (h, i),
            p + "input_layernorm.weight": (h,), p + "post_attention_layernorm.weight": (h,),
        })
    out = {}
    for name, shape in t.items():
        dtype = np.float16 if name.endswith("norm.weight") else np.float32
        out[name] = rng.standard_normal(shape).astype(dtype)
    return out


def make_llm(d, orig):
    from safetensors.numpy import save_file
    from tokenizers import Tokenizer, models, pre_tokenizers, decoders, trainers
    from transformers import LlamaConfig, PreTrainedTokenizerFast

    os.makedirs(d, exist_ok=True)
    tok = Tokenizer(models.BPE(unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=300, special_tokens=["<unk>", "<s>", "</s>"],
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    tok.train_from_iterator(LINES, trainer)
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, unk_token="<unk>", bos_token="<s>",
                                   eos_token="</s>")
    fast.save_pretrained(d)
    config = LlamaConfig(vocab_size=tok.get_vocab_size(), hidden_size=32, intermediate_size=64,
                         num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2,
                         max_position_embeddings=64, bos_token_id=1, eos_token_id=2)
    config.save_pretrained(d)
    tensors = llm_tensors(config)
    names = sorted(tensors)
    half = len(names) // 2
    weight_map = {}
    for shard, part in zip(SHARDS, (names[:half], names[half:])):
        save_file({n: tensors[n] for n in part}, os.path.join(d, shard), metadata={"format": "np"})
        weight_map.update({n: shard for n in part})
    total = sum(t.nbytes for t in tensors.values())
    with open(os.path.join(d, "model.safetensors.index.json"), "w") as f:
        json.dump({"metadata": {"total_size": total}, "weight_map": weight_map}, f, indent=2)
    np.savez(orig, **tensors)
    print(f"tiny Llama in {d}: {len(tensors)} tensors, {total} bytes in {len(SHARDS)} shards, "
          f"vocabulary {tok.get_vocab_size()}")


def check_llm(d, orig):
    from safetensors import safe_open
    from transformers import AutoConfig, AutoTokenizer

    config = AutoConfig.from_pretrained(d)
    assert config.model_type == "llama", config.model_type
    tokenizer = AutoTokenizer.from_pretrained(d)
    ids = tokenizer(LINES[1])["input_ids"]
    back = tokenizer.decode(ids, skip_special_tokens=True)
    assert back == LINES[1], (back, LINES[1])
    with open(os.path.join(d, "model.safetensors.index.json")) as f:
        weight_map = json.load(f)["weight_map"]
    want = np.load(orig)
    assert sorted(weight_map) == sorted(want.files), "the index names other tensors"
    for shard in sorted(set(weight_map.values())):
        with safe_open(os.path.join(d, shard), framework="np") as f:
            for name in f.keys():
                got = f.get_tensor(name)
                w = want[name]
                assert weight_map[name] == shard, f"{name} is in {shard}, the index says otherwise"
                assert got.dtype == w.dtype and got.shape == w.shape, (name, got.dtype, got.shape)
                assert np.array_equal(got, w), f"{name} differs"
    print(f"{d}: AutoConfig {config.model_type} ({config.num_hidden_layers} layers), "
          f"AutoTokenizer round trip of {len(ids)} tokens, {len(weight_map)} tensors equal "
          f"to the originals")


ONNX_X = np.array([[1.0, 2.0, 3.0], [-1.0, 0.5, 4.0]], dtype=np.float32)
ONNX_W = np.arange(6, dtype=np.float32).reshape(3, 2) / 4
ONNX_B = np.array([0.5, -2.0], dtype=np.float32)


def make_onnx(d):
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    graph = helper.make_graph(
        [helper.make_node("MatMul", ["X", "W"], ["XW"]), helper.make_node("Add", ["XW", "B"], ["Y"])],
        "affine",
        [helper.make_tensor_value_info("X", TensorProto.FLOAT, [None, 3])],
        [helper.make_tensor_value_info("Y", TensorProto.FLOAT, [None, 2])],
        [numpy_helper.from_array(ONNX_W, "W"), numpy_helper.from_array(ONNX_B, "B")],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    os.makedirs(d, exist_ok=True)
    os.makedirs(os.path.join(d, "1"), exist_ok=True)
    onnx.save(model, os.path.join(d, "1", "model.onnx"))
    print(f"{d}/1/model.onnx: Y = X @ W + B, opset 13, IR version 8")


def check_onnx(d):
    import onnxruntime as ort

    session = ort.InferenceSession(os.path.join(d, "1", "model.onnx"),
                                   providers=["CPUExecutionProvider"])
    (y,) = session.run(["Y"], {"X": ONNX_X})
    want = ONNX_X @ ONNX_W + ONNX_B
    assert np.allclose(y, want), (y, want)
    print(f"onnxruntime {ort.__version__} ran {d}/1/model.onnx: Y = {y.tolist()} as expected")


def main(argv):
    commands = {"fetch": fetch, "make-llm": make_llm, "check-llm": check_llm,
                "make-onnx": make_onnx, "check-onnx": check_onnx}
    if len(argv) < 2 or argv[1] not in commands:
        sys.exit(__doc__)
    commands[argv[1]](*argv[2:])


if __name__ == "__main__":
    main(sys.argv)
