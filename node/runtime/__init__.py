"""Model runtime: GGUF loading, tokenizer, Llama reference model, ONNX export and compiler.

Import-light on purpose (no web3/eth imports): it runs on GPU machines that lack them.
"""
