"""Float32 tolerances for the suite, each with the reason for its size (docs/testing.md).

Two float32 computations of the same math agree only to rounding when they sum in another
order: another chunking, jit against eager, permuted rows, another device split, or the same
program compiled for another CPU (XLA:CPU emits AVX2 or AVX-512 code, and its dot kernels pick
their vector width at run time). Exact comparisons are kept for what must be exact: integer and
boolean outputs, and the same program on the same machine run twice.
"""

import numpy as np

EPS32 = float(np.finfo(np.float32).eps)  # 2**-23 = 1.19e-7: one ulp at 1.0

# Same math, another summation order. A float32 sum of n terms may move by up to (n - 1) eps
# relative to the sum of magnitudes (Higham, Accuracy and Stability of Numerical Algorithms,
# eq. 4.4), and by about sqrt(n) eps in practice. The losses the suite compares reduce at most 64
# terms at a time (64 eps = 7.6e-6); the test networks' layers at most 576 (3 x 3 x 64), whose
# typical sqrt(576) eps = 2.9e-6 is what the AVX-512 CPU showed on the encoder (3.0e-6).
REASSOC_RTOL = 1e-5

# Elementwise float32 formulas (a handful of correctly rounded ops per element, FMA contraction or
# not): a few ulp, 8 eps = 9.5e-7.
ELEMENTWISE_RTOL = 1e-6

# Augmented views (values in about [-0.2, 1.4]): a resize dot of at most 96 terms, then about 30
# colour ops, each within an ulp at magnitude <= 2: (96 + 30) * 2 eps = 3.0e-5. One grey level,
# 1/255 = 3.9e-3, is 130 times larger, so a changed draw, parameter or op order still fails. Measured
# between an AVX2 recording and an AVX-512 machine: at most 9.5e-7.
VIEW_ATOL = 3e-5
