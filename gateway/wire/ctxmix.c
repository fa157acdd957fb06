/*
 * ctxmix: the context-mixing coder of integer columns (wire format method 8, issue 17), loaded by
 * gateway/wire/ctxmix.py through ctypes. A plain shared library: no Python headers, no CPython API
 * (docs/decisions.md), so Debian's aarch64-linux-gnu-gcc cross-compiles it without a target Python.
 *
 * docs/wire-format.md section 4.1 is the specification; tests/unit/gateway/wire/ctxmix_reference.py is
 * a plain Python coder written from it and bit-exact with this file. The structure (binary decisions,
 * hashed counters, one gated linear mixer in the stretched domain, a 32-bit carry-less arithmetic coder)
 * follows lpaq1 (Matt Mahoney, 2007, public domain); the models are this project's.
 *
 * Each value of the column is coded as binary decisions: its magnitude class (bit length, unary), its
 * sign, then its mantissa bits. Seven models predict each decision from a hashed context; a mixer whose
 * weight set is chosen by the decision's node combines them; the arithmetic coder codes the decision.
 *
 * Integer-only and deterministic: every shift of a negative number goes through floor_shift(), every
 * conversion of an out-of-range unsigned value through as_int64(), so the result is the same on every
 * C11 compiler. Memory: one state of about 1.4 MB per call (the seven 2^16-slot tables), freed on every
 * path. Work: at most 128 decisions per value. The decoder decodes exactly n values, reads bytes past
 * the end of its input as 0 and never reads or writes outside its buffers.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#define CTXMIX_ABI 2

#define ERR_CAPACITY (-1)
#define ERR_PARAMS (-2)
#define ERR_RANGE (-3)
#define ERR_MEMORY (-4)

#define MAX_PERIOD 1440            /* readings per day at one a minute */
#define MAX_MODULUS 4294967296LL   /* 2^32: keeps the modular running sum far from overflow */
#define MAX_COUNT 16777216L        /* 2^24 values: 128 decisions each stay below 2^32 mixer uses */

#define MODELS 7
#define INPUTS (MODELS + 1)        /* the models' stretched probabilities and the bias */
#define BIAS 256
#define TABLE_BITS 16              /* 2^14 slots cost 0.23 % more bytes on the 22 test series */
#define SLOTS (1u << TABLE_BITS)
#define COUNT_LIMIT 255
#define NODES 208
#define WHOLE_CLASSES 10           /* classes up to 10 are modelled as whole symbols: 4.4 % of the bytes */
#define WEIGHT_INIT 4000
#define WEIGHT_LIMIT (1 << 22)     /* never reached by real columns; keeps the dot product far from overflow */
#define RATE_BASE 576
#define RATE_BOOST 40960           /* the start-up learning boost: 0.32 % of the bytes */
#define K1 0x9E3779B97F4A7C15ull
#define K2 0xD6E8FEB86659FD93ull
#define SALT_OFFSET 0x632BE59BD9B4E019ull
#define REST_CONTEXT 99

#define EXPORT __attribute__((visibility("default")))

EXPORT long ctxmix_abi(void);
EXPORT long ctxmix_encode(const int64_t *values, long n, const int64_t *params, long nparams, uint8_t *out,
                          long cap);
EXPORT long ctxmix_decode(const uint8_t *in, long len, long n, const int64_t *params, long nparams,
                          int64_t *out);

long ctxmix_abi(void) { return CTXMIX_ABI; }

/* the model salts (their numbers in the feasibility prototype) and whether a model keeps its context on
 * the low mantissa bits of a class above WHOLE_CLASSES */
static const uint64_t SALT[MODELS] = {0, 1, 4, 5, 10, 12, 13};
static const int KEEPS[MODELS] = {1, 1, 1, 0, 1, 0, 0};

static const int SQUASH[33] = {1,    2,    3,    6,    10,   16,   27,   45,   73,   120,  194,
                               310,  488,  747,  1101, 1546, 2047, 2549, 2994, 3348, 3607, 3785,
                               3901, 3975, 4024, 4050, 4068, 4079, 4085, 4089, 4092, 4093, 4094};

typedef struct {
    long period;
    int levels;
    int64_t modulus;
} Params;

typedef struct {
    uint16_t prob[MODELS][SLOTS]; /* p(bit = 1) in 1/65536 */
    uint8_t count[MODELS][SLOTS];
    int32_t weight[NODES][INPUTS];
    uint32_t uses[NODES];
    int16_t stretch[4096];
    int32_t rate[COUNT_LIMIT + 1];
    Params params;
    uint64_t key[MODELS], rest_key[MODELS];
    uint32_t slot[MODELS];
    int32_t input[INPUTS];
    int64_t r1, r2, level, previous; /* the last two values, the running sum, model 10's value */
    /* arithmetic coder */
    uint32_t x1, x2, x;
    int decoding, overflow;
    const uint8_t *in;
    uint8_t *out;
    long len, pos;
} State;

/* floor(v / 2^s): the arithmetic shift, written so that no compiler may choose otherwise */
static int64_t floor_shift(int64_t v, int s) { return v >= 0 ? v >> s : -((-(v + 1)) >> s) - 1; }

/* the two's complement reading of 64 bits */
static int64_t as_int64(uint64_t u) { return u <= INT64_MAX ? (int64_t)u : -(int64_t)(~u) - 1; }

static int bit_length(uint64_t u) {
    int k = 0;
    while (u) {
        u >>= 1;
        k++;
    }
    return k;
}

static int min_int(int a, int b) { return a < b ? a : b; }

/* a value's signed magnitude class: 0 for 0, 1..7 for positive, 8..14 for negative */
static int signed_class(int64_t r) {
    if (r == 0) {
        return 0;
    }
    uint64_t magnitude = r > 0 ? (uint64_t)r : 0 - (uint64_t)r;
    return (r > 0 ? 0 : 7) + min_int(bit_length(magnitude), 7);
}

/* 4096 / (1 + e^-d/256) for d in -2047..2047, by linear interpolation in the 33-entry table */
static int squash(int d) {
    int i = (d + 2048) >> 7, w = (d + 2048) & 127;
    return (SQUASH[i] * (128 - w) + SQUASH[i + 1] * w + 64) >> 7;
}

static uint64_t mix_key(uint64_t a, uint64_t b) { return (a + SALT_OFFSET) * K1 + b; }

static State *state_new(const Params *params) {
    State *s = malloc(sizeof *s);
    if (!s) {
        return 0;
    }
    memset(s, 0, sizeof *s);
    s->params = *params;
    for (int m = 0; m < MODELS; m++) {
        for (uint32_t i = 0; i < SLOTS; i++) {
            s->prob[m][i] = 32768;
        }
        s->rest_key[m] = mix_key(SALT[m], REST_CONTEXT);
    }
    for (int d = 0; d < NODES; d++) {
        for (int i = 0; i < INPUTS; i++) {
            s->weight[d][i] = WEIGHT_INIT;
        }
    }
    /* stretch(p): the least d with squash(d) >= p, 2047 where there is none */
    int p = 0;
    for (int d = -2047; d <= 2047; d++) {
        for (int top = squash(d); p <= top; p++) {
            s->stretch[p] = (int16_t)d;
        }
    }
    for (; p < 4096; p++) {
        s->stretch[p] = 2047;
    }
    for (int n = 0; n <= COUNT_LIMIT; n++) {
        s->rate[n] = 131072 / (2 * n + 3);
    }
    s->x2 = 0xffffffffu;
    return s;
}

/* the contexts of value t, from the values before it */
static void set_contexts(State *s, long t) {
    long period = s->params.period;
    uint64_t phase = period > 1 ? (uint64_t)(t % period) : 0;
    uint64_t c1 = (uint64_t)signed_class(s->r1);
    s->key[0] = 0;
    s->key[1] = mix_key(1, c1);
    s->key[2] = mix_key(4, (uint64_t)s->r1);
    s->key[3] = mix_key(mix_key(5, (uint64_t)s->r1), (uint64_t)s->r2);
    s->key[4] = mix_key(10, (uint64_t)s->previous);
    s->key[5] = mix_key(12, phase);
    s->key[6] = mix_key(mix_key(13, phase), c1);
}

static void push_value(State *s, int64_t v) {
    s->r2 = s->r1;
    s->r1 = v;
    s->level = as_int64((uint64_t)s->level + (uint64_t)v);
    if (s->params.modulus > 0) {
        s->level %= s->params.modulus;
        if (s->level < 0) {
            s->level += s->params.modulus;
        }
    }
    s->previous = s->params.levels ? v : s->level;
}

/* p(bit = 1) in 1/4096 for the decision at `node` with fine node `fine` */
static int predict(State *s, int node, uint64_t fine, int rest) {
    int64_t dot = 0;
    for (int m = 0; m < MODELS; m++) {
        uint64_t key = rest && !KEEPS[m] ? s->rest_key[m] : s->key[m];
        uint32_t slot = (uint32_t)(((key + fine * K2) * K1) >> (64 - TABLE_BITS));
        s->slot[m] = slot;
        s->input[m] = s->count[m][slot] ? s->stretch[s->prob[m][slot] >> 4] : 0;
    }
    s->input[MODELS] = BIAS;
    for (int i = 0; i < INPUTS; i++) {
        dot += (int64_t)s->input[i] * s->weight[node][i];
    }
    int64_t d = floor_shift(dot, 16);
    d = d > 2047 ? 2047 : d < -2047 ? -2047 : d;
    int p = squash((int)d);
    return p < 1 ? 1 : p > 4095 ? 4095 : p;
}

static void learn(State *s, int node, int p, int y) {
    uint32_t uses = s->uses[node]++;
    int64_t err = ((int64_t)(y << 12) - p) * (RATE_BASE + RATE_BOOST / (64 + (int64_t)(uses >> 4)));
    for (int i = 0; i < INPUTS; i++) {
        int64_t w = s->weight[node][i] + floor_shift(s->input[i] * err, 20);
        s->weight[node][i] = (int32_t)(w > WEIGHT_LIMIT ? WEIGHT_LIMIT : w < -WEIGHT_LIMIT ? -WEIGHT_LIMIT : w);
    }
    int32_t target = y ? 65535 : 0;
    for (int m = 0; m < MODELS; m++) {
        uint32_t slot = s->slot[m];
        int n = s->count[m][slot];
        int32_t q = s->prob[m][slot];
        s->prob[m][slot] = (uint16_t)(q + floor_shift((int64_t)(target - q) * s->rate[n], 16));
        if (n < COUNT_LIMIT) {
            s->count[m][slot] = (uint8_t)(n + 1);
        }
    }
}

static uint32_t next_byte(State *s) { return s->pos < s->len ? s->in[s->pos++] : 0; }

static void emit(State *s, uint32_t byte) {
    if (s->pos < s->len) {
        s->out[s->pos++] = (uint8_t)byte;
    } else {
        s->overflow = 1;
    }
}

/* codes `bit` (encoding) or decodes one (bit < 0); returns it */
static int code_bit(State *s, int node, uint64_t fine, int rest, int bit) {
    int p = predict(s, node, fine, rest);
    uint32_t mid = s->x1 + (uint32_t)(((uint64_t)(s->x2 - s->x1) * (uint32_t)p) >> 12);
    int y = s->decoding ? s->x <= mid : bit;
    if (y) {
        s->x2 = mid;
    } else {
        s->x1 = mid + 1;
    }
    learn(s, node, p, y);
    while (((s->x1 ^ s->x2) & 0xff000000u) == 0) {
        if (s->decoding) {
            s->x = (s->x << 8) | next_byte(s);
        } else {
            emit(s, s->x2 >> 24);
        }
        s->x1 <<= 8;
        s->x2 = (s->x2 << 8) | 255;
    }
    return y;
}

/* the magnitude class k (bit length, 0..64) as unary decisions "k > j" */
static int code_class(State *s, int k) {
    int coded = 0;
    for (int j = 0; j < 64; j++) {
        if (!code_bit(s, min_int(j, 23), (uint64_t)j, 0, k > j)) {
            break;
        }
        coded++;
    }
    return coded;
}

static int mantissa_node(int k, int pos, int top) {
    int kc = min_int(k, 15);
    if (pos == 0) {
        return 32 + kc;
    }
    return pos == 1 ? 48 + 2 * kc + top : 80 + kc * 8 + min_int(pos, 7);
}

/* the k-1 bits of u below its leading one, most significant first; returns u */
static uint64_t code_mantissa(State *s, int k, int negative, uint64_t u) {
    uint64_t prefix = k ? 1 : 0; /* the bits of u coded so far, with its leading one */
    uint64_t sign = (uint64_t)negative << 30;
    int top = 0;
    for (int b = k - 2, pos = 0; b >= 0; b--, pos++) {
        uint64_t fine = 300000u + (uint64_t)k * 64 + (uint64_t)pos;
        int rest = 0;
        if (k <= WHOLE_CLASSES) {
            fine = 1000u + (1u << k) + prefix + sign;
        } else if (pos < 2) {
            fine = 200000u + (uint64_t)k * 4 + (pos ? 2u + (uint64_t)top : 0u) + sign;
        } else {
            rest = 1;
        }
        int y = code_bit(s, mantissa_node(k, pos, top), fine, rest, (int)(u >> b & 1));
        prefix = (prefix << 1) | (uint64_t)y;
        top = pos == 0 ? y : top;
    }
    return prefix;
}

/* one value: encoded from *value, or decoded into it; ERR_RANGE for a decoded magnitude beyond int64 */
static int code_value(State *s, int64_t *value) {
    int64_t v = s->decoding ? 0 : *value;
    uint64_t u = v >= 0 ? (uint64_t)v : 0 - (uint64_t)v;
    int k = code_class(s, bit_length(u));
    int negative = k ? code_bit(s, 24 + min_int(k, 7), 100u + (uint64_t)k, 0, v < 0) : 0;
    u = code_mantissa(s, k, negative, u);
    if (s->decoding) {
        if (u > (1ull << 63) || (u == (1ull << 63) && !negative)) {
            return ERR_RANGE;
        }
        *value = as_int64(negative ? 0 - u : u);
    }
    return 0;
}

static int read_params(const int64_t *params, long nparams, long n, Params *out) {
    if (nparams != 3 || !params || n < 0 || n > MAX_COUNT) {
        return 0;
    }
    if (params[0] < 0 || params[0] > MAX_PERIOD || params[1] < 0 || params[1] > 1 || params[2] < 0 ||
        params[2] > MAX_MODULUS) {
        return 0;
    }
    out->period = (long)params[0];
    out->levels = (int)params[1];
    out->modulus = params[2];
    return 1;
}

/* the state of one call, or 0 with *status: 0 for an empty column, ERR_PARAMS or ERR_MEMORY */
static State *open_call(const int64_t *params, long nparams, long n, int buffers_valid, long *status) {
    Params p;
    *status = ERR_PARAMS;
    if (!buffers_valid || !read_params(params, nparams, n, &p)) {
        return 0;
    }
    *status = 0;
    if (n == 0) {
        return 0;
    }
    State *s = state_new(&p);
    *status = s ? 0 : ERR_MEMORY;
    return s;
}

long ctxmix_encode(const int64_t *values, long n, const int64_t *params, long nparams, uint8_t *out,
                   long cap) {
    long status;
    State *s = open_call(params, nparams, n, cap >= 0 && (!n || values) && (!cap || out), &status);
    if (!s) {
        return status;
    }
    s->out = out;
    s->len = cap;
    for (long t = 0; t < n && !s->overflow; t++) {
        int64_t v = values[t];
        set_contexts(s, t);
        code_value(s, &v);
        push_value(s, v);
    }
    /* flush: x1 and x2 differ in their top byte, so (top(x1) + 1) << 24 lies in (x1, x2] and the
     * decoder, reading zeros past the end, finds it there */
    emit(s, (s->x1 >> 24) + 1);
    long written = s->overflow ? ERR_CAPACITY : s->pos;
    free(s);
    return written;
}

long ctxmix_decode(const uint8_t *in, long len, long n, const int64_t *params, long nparams,
                   int64_t *out) {
    long status;
    State *s = open_call(params, nparams, n, len >= 0 && (!len || in) && (!n || out), &status);
    if (!s) {
        return status;
    }
    s->decoding = 1;
    s->in = in;
    s->len = len;
    for (int i = 0; i < 4; i++) {
        s->x = (s->x << 8) | next_byte(s);
    }
    for (long t = 0; t < n && status == 0; t++) {
        set_contexts(s, t);
        status = code_value(s, &out[t]);
        if (status == 0) {
            push_value(s, out[t]);
        }
    }
    free(s);
    return status;
}
