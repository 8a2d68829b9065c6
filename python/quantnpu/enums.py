"""The C enums of quantnpu.h, mirrored as IntEnum. Values are pinned forever in C; the test
suite cross-checks them against the library (qnpu_status_string, qnpu_param_info,
qnpu_param_from_name) and against the header text."""

from enum import IntEnum

__all__ = ["Status", "Param", "ParamType", "ModelDim", "ModelHparam", "LogLevel"]


class Status(IntEnum):
    """qnpu_status (QNPU_OK, QNPU_ERR_*)."""
    OK = 0
    INVALID_ARG = 1
    NO_MEMORY = 2
    IO = 3
    FORMAT = 4
    UNSUPPORTED = 5
    STATE = 6
    CANCELLED = 7
    BUFFER_TOO_SMALL = 8
    NUMERIC = 9
    RECIPE = 10
    INTERNAL = 11


class Param(IntEnum):
    """qnpu_param (QNPU_P_*). A member's name is its C name upper-cased with dots written as
    underscores ("eval.seq_len" is EVAL_SEQ_LEN); quantnpu.param_info(p).name gives the C name."""
    # 1-99: global
    NUM_THREADS = 1
    SEED = 2
    EVAL_SEQ_LEN = 10
    MODEL_CHECK_FINITE = 20
    MODEL_MMAP = 21
    # 100s: calibration and initialization
    CALIB_SEQ_LEN = 100
    CALIB_NUM_SAMPLES = 101
    CALIB_FIRST_BLOCK = 102
    CALIB_TEXT = 103
    INIT_ACT_ROTATED = 110
    INIT_ACT_UNROTATED = 111
    INIT_WEIGHT = 112
    INIT_SIGMA_K = 113
    INIT_EMA = 114
    INIT_WARMUP_CALLS = 115
    OBSERVER_SYM_DIVISOR = 120
    OBSERVER_LINEAR_IN = 121
    OBSERVER_LINEAR_OUT = 122
    OBSERVER_KV = 123
    OBSERVER_ATTENTION = 124
    OBSERVER_OTHER = 125
    OBSERVER_PERCENTILE = 126
    OBSERVER_SIGMA_K = 127
    OBSERVER_BINS = 128
    QUANT_W_BITS = 150
    QUANT_A_BITS = 151
    QUANT_DOWN_A_BITS = 152
    QUANT_KV_BITS = 153
    QUANT_HEAD_W_BITS = 154
    QUANT_OUT_BITS = 155
    QUANT_WEIGHT_CLIP = 156
    QUANT_BITS_OVERRIDE = 157
    # 200s: rotation
    ROTATE_R1 = 200
    ROTATE_R2 = 201
    ROTATE_R4 = 202
    ROTATE_HADAMARD_FALLBACK = 203
    ROTATE_MAX_DENSE_BLOCK = 204
    ROTATE_SEED = 205
    ROTATE_R4_LAYERS = 206
    # 300s: optimizer
    OPTIM_STEPS = 300
    OPTIM_BATCH = 301
    OPTIM_LR = 302
    OPTIM_QPARAM_LR_RATIO = 303
    OPTIM_SCHEDULE = 304
    OPTIM_CLIP_NORM = 305
    OPTIM_QPARAM_GRAD_CLAMP = 306
    OPTIM_CAYLEY_ITERS = 307
    OPTIM_QR_EVERY = 308
    OPTIM_TRAIN_ROTATION = 309
    OPTIM_TRAIN_QPARAMS = 310
    OPTIM_SHUFFLE = 311
    OPTIM_MICRO_BATCH = 312
    OPTIM_WEIGHT_ROUND = 313
    OPTIM_GPTQ_DAMP = 314
    OPTIM_LOSS = 315
    OPTIM_NAIVE_JOINT = 316
    OPTIM_TRAIN = 317
    # 400s: mixed precision
    MIXED_MODE = 400
    MIXED_P = 401
    MIXED_NUM_SAMPLES = 402
    # 500s: export
    EXPORT_ENCODINGS_VERSION = 500
    EXPORT_ONNX_FLAVOR = 501
    EXPORT_SEQ_LEN = 502
    EXPORT_QNN_LINEAR_AS = 503
    EXPORT_PAST_LEN = 504
    # 600s: engine
    ENGINE_CTX_SIZE = 600
    ENGINE_KERNELS = 601


class ParamType(IntEnum):
    """qnpu_param_type (QNPU_PTYPE_*)."""
    INT = 1
    FLOAT = 2
    BOOL = 3
    CHOICE = 4
    STRING = 5


class ModelDim(IntEnum):
    """qnpu_model_dim (QNPU_DIM_*), read with Model.get_dim."""
    HIDDEN = 1
    FFN = 2
    LAYERS = 3
    HEADS = 4
    KV_HEADS = 5
    HEAD_DIM = 6
    VOCAB = 7
    MAX_SEQ = 8
    ROPE_ORDER = 9
    TIED = 10
    QKV_BIAS = 11
    BOS = 12
    EOS = 13


class ModelHparam(IntEnum):
    """qnpu_model_hparam (QNPU_HP_*), read with Model.get_hparam."""
    ROPE_THETA = 1
    RMS_EPS = 2


class LogLevel(IntEnum):
    """qnpu_log_level (QNPU_LOG_*); 0 turns logging off in set_log_level."""
    ERROR = 1
    WARN = 2
    INFO = 3
    DEBUG = 4
