# cython: language_level=3
"""llmcli._kernels: the one compiled extension. Thin Cython wrappers over csrc/*.c.

Each wrapper checks its buffers' shapes and sizes once, then calls C without the GIL.
The wrappers are grouped by concept in .pxi files included below:
  _quant_kernels.pxi  block formats, dequantization, quantized matvec/matmul, threads, CPU path
  _ops_kernels.pxi    rmsnorm, rope, softmax, activations, attention over the KV cache
  _bpe.pxi            the BPE merge loop of the tokenizer
  _gguf_kernels.pxi   where a GGUF string array's strings lie, and packing them
  _forward.pxi        the transformer layers in one call (LayerStack), over the kernels above
"""

include "_quant_kernels.pxi"
include "_ops_kernels.pxi"
include "_bpe.pxi"
include "_gguf_kernels.pxi"
include "_forward.pxi"
