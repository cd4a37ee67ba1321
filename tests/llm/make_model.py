"""Write a tiny llama GGUF with random weights for the real llama.cpp server test.

Usage: python make_model.py VOCAB.gguf OUT.gguf

The vocabulary (tokenizer.* keys) is taken from one of the vocab-only GGUF files that llama.cpp ships in
its models/ folder; the network is one transformer block with small random weights. The model answers
nonsense, but a server that applies a JSON-schema grammar still makes it produce schema-valid JSON.
"""
import sys

import numpy as np
from gguf import GGUFReader, GGUFValueType, GGUFWriter

N_EMBD = 64
N_HEAD = 4
N_HEAD_KV = 4
N_FF = 128
N_CTX = 4096


def field_value(field):
    types = field.types
    if types[0] == GGUFValueType.ARRAY:
        return field.contents(), GGUFValueType.ARRAY, types[-1]
    return field.contents(), types[0], None


def main(vocab_path, out_path):
    reader = GGUFReader(vocab_path)
    tokens = reader.fields["tokenizer.ggml.tokens"].contents()
    n_vocab = len(tokens)
    w = GGUFWriter(out_path, "llama")
    w.add_name("ralf-sh test llama (random weights)")
    w.add_context_length(N_CTX)
    w.add_embedding_length(N_EMBD)
    w.add_block_count(1)
    w.add_feed_forward_length(N_FF)
    w.add_head_count(N_HEAD)
    w.add_head_count_kv(N_HEAD_KV)
    w.add_layer_norm_rms_eps(1e-5)
    w.add_rope_dimension_count(N_EMBD // N_HEAD)
    w.add_vocab_size(n_vocab)
    w.add_file_type(0)  # all F32
    for name, field in reader.fields.items():
        if not name.startswith("tokenizer."):
            continue
        value, vtype, sub = field_value(field)
        w.add_key_value(name, value, vtype, sub_type=sub)
    rng = np.random.default_rng(14)

    def rand(*shape):
        return (rng.standard_normal(shape) * 0.02).astype(np.float32)

    w.add_tensor("token_embd.weight", rand(n_vocab, N_EMBD))
    w.add_tensor("output_norm.weight", np.ones(N_EMBD, dtype=np.float32))
    w.add_tensor("output.weight", rand(n_vocab, N_EMBD))
    w.add_tensor("blk.0.attn_norm.weight", np.ones(N_EMBD, dtype=np.float32))
    w.add_tensor("blk.0.attn_q.weight", rand(N_EMBD, N_EMBD))
    w.add_tensor("blk.0.attn_k.weight", rand(N_EMBD // N_HEAD * N_HEAD_KV, N_EMBD))
    w.add_tensor("blk.0.attn_v.weight", rand(N_EMBD // N_HEAD * N_HEAD_KV, N_EMBD))
    w.add_tensor("blk.0.attn_output.weight", rand(N_EMBD, N_EMBD))
    w.add_tensor("blk.0.ffn_norm.weight", np.ones(N_EMBD, dtype=np.float32))
    w.add_tensor("blk.0.ffn_gate.weight", rand(N_FF, N_EMBD))
    w.add_tensor("blk.0.ffn_down.weight", rand(N_EMBD, N_FF))
    w.add_tensor("blk.0.ffn_up.weight", rand(N_FF, N_EMBD))
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()


if __name__ == "__main__":
    if len(sys.argv) != 3:
        sys.exit("usage: make_model.py VOCAB.gguf OUT.gguf")
    main(sys.argv[1], sys.argv[2])
