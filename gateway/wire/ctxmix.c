/*
 * ctxmix: the compiled integer-column coder of wire format issue 17, loaded by gateway/wire/ctxmix.py
 * through ctypes. A plain shared library: no Python headers, no CPython API (docs/decisions.md), so
 * Debian's aarch64-linux-gnu-gcc cross-compiles it without a target Python.
 *
 * This is the build-and-packaging stand-in of the interface, a real codec: each value's delta of order
 * params[0] (0: the value, 1: the previous value's difference, 2: delta of delta) as a zigzag LEB128
 * varint. The context-mixing coder replaces the body of this file behind the same three functions.
 *
 * Arithmetic on the column is modulo 2^64 (uint64_t), so any int64 column round-trips, extremes
 * included, and no input can cause signed overflow. The decoder never reads past `len` and never
 * writes past `n` values, whatever the bytes.
 */
#include <stdint.h>

#define CTXMIX_ABI 1
#define MAX_ORDER 2
#define VARINT_MAX_BYTES 10

#define ERR_CAPACITY (-1)
#define ERR_PARAMS (-2)
#define ERR_EXHAUSTED (-3)
#define ERR_OVERLONG (-4)
#define ERR_TRAILING (-5)

#define EXPORT __attribute__((visibility("default")))

EXPORT long ctxmix_abi(void);
EXPORT long ctxmix_encode(const int64_t *values, long n, const int64_t *params, long nparams, uint8_t *out,
                          long cap);
EXPORT long ctxmix_decode(const uint8_t *in, long len, long n, const int64_t *params, long nparams,
                          int64_t *out);

long ctxmix_abi(void) { return CTXMIX_ABI; }

static int order_of(const int64_t *params, long nparams) {
    if (nparams != 1 || params == 0 || params[0] < 0 || params[0] > MAX_ORDER) {
        return -1;
    }
    return (int)params[0];
}

/* the prediction of value t from the ones before it (all modulo 2^64) */
static uint64_t predict(const uint64_t *history, long t, int order) {
    if (order == 0 || t == 0) {
        return 0;
    }
    if (order == 1 || t == 1) {
        return history[t - 1];
    }
    return 2 * history[t - 1] - history[t - 2];
}

static uint64_t zigzag(uint64_t residual) {
    return (residual << 1) ^ (uint64_t)(-(int64_t)(residual >> 63));
}

static uint64_t unzigzag(uint64_t code) { return (code >> 1) ^ (uint64_t)(-(int64_t)(code & 1)); }

long ctxmix_encode(const int64_t *values, long n, const int64_t *params, long nparams, uint8_t *out,
                   long cap) {
    int order = order_of(params, nparams);
    if (order < 0 || n < 0 || cap < 0) {
        return ERR_PARAMS;
    }
    const uint64_t *history = (const uint64_t *)values;
    long written = 0;
    for (long t = 0; t < n; t++) {
        uint64_t code = zigzag(history[t] - predict(history, t, order));
        do {
            if (written >= cap) {
                return ERR_CAPACITY;
            }
            uint8_t byte = (uint8_t)(code & 0x7f);
            code >>= 7;
            out[written++] = code ? (uint8_t)(byte | 0x80) : byte;
        } while (code);
    }
    return written;
}

/* one varint at in[*pos], at most 10 bytes, the 10th carrying only bit 63 */
static int read_varint(const uint8_t *in, long len, long *pos, uint64_t *code) {
    uint64_t result = 0;
    for (int i = 0; i < VARINT_MAX_BYTES; i++) {
        if (*pos >= len) {
            return ERR_EXHAUSTED;
        }
        uint8_t byte = in[(*pos)++];
        if (i == VARINT_MAX_BYTES - 1 && byte > 1) {
            return ERR_OVERLONG;
        }
        result |= (uint64_t)(byte & 0x7f) << (7 * i);
        if (!(byte & 0x80)) {
            *code = result;
            return 0;
        }
    }
    return ERR_OVERLONG;
}

long ctxmix_decode(const uint8_t *in, long len, long n, const int64_t *params, long nparams,
                   int64_t *out) {
    int order = order_of(params, nparams);
    if (order < 0 || n < 0 || len < 0) {
        return ERR_PARAMS;
    }
    uint64_t *history = (uint64_t *)out;
    long pos = 0;
    for (long t = 0; t < n; t++) {
        uint64_t code = 0;
        int status = read_varint(in, len, &pos, &code);
        if (status) {
            return status;
        }
        history[t] = unzigzag(code) + predict(history, t, order);
    }
    return pos == len ? 0 : ERR_TRAILING;
}
