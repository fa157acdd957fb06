"""A second coder of wire format method 8, written from docs/wire-format.md section 4.1 alone.

Plain loops over plain Python integers, 64-bit arithmetic by masking: slow (milliseconds a value) and
meant to be read beside the spec, not run on whole batches. The tests hold it bit-exact with the C coder
(gateway/wire/ctxmix.c), so a change to either that the other does not make fails them.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

MASK64 = (1 << 64) - 1
K1 = 0x9E3779B97F4A7C15
K2 = 0xD6E8FEB86659FD93
SALT_OFFSET = 0x632BE59BD9B4E019
# fmt: off
SQUASH = (
    1, 2, 3, 6, 10, 16, 27, 45, 73, 120, 194, 310, 488, 747, 1101, 1546, 2047,
    2549, 2994, 3348, 3607, 3785, 3901, 3975, 4024, 4050, 4068, 4079, 4085, 4089, 4092, 4093, 4094,
)
# fmt: on
#: (salt, keeps its context on the low mantissa bits of a class above 10) of the seven models
MODELS = ((0, True), (1, True), (4, True), (5, False), (10, True), (12, False), (13, False))
TABLE_BITS = 16
NODES = 208
WHOLE_CLASSES = 10


class OutOfRange(ValueError):
    """A decoded magnitude that is no int64 value."""


def squash(d: int) -> int:
    """4096 / (1 + e^(-d/256)), interpolated in the 33-entry table, for -2047 <= d <= 2047."""
    i, w = (d + 2048) // 128, (d + 2048) % 128
    return (SQUASH[i] * (128 - w) + SQUASH[i + 1] * w + 64) // 128


def stretch_table() -> list[int]:
    """stretch(p), the least d in -2047..2047 with squash(d) >= p (2047 when there is none), for each p."""
    table = [2047] * 4096
    p = 0
    for d in range(-2047, 2048):
        while p <= squash(d):
            table[p] = d
            p += 1
    return table


STRETCH = stretch_table()


def mix_key(a: int, b: int) -> int:
    return ((a + SALT_OFFSET) * K1 + b) & MASK64


def signed_class(r: int) -> int:
    if r == 0:
        return 0
    return (0 if r > 0 else 7) + min(abs(r).bit_length(), 7)


def unsigned(v: int) -> int:
    return v & MASK64


def signed(u: int) -> int:
    return u - (1 << 64) if u >= 1 << 63 else u


@dataclass
class Coder:
    """The state of one column: counters, mixer, value history and the arithmetic coder."""

    period: int
    levels: bool
    modulus: int
    data: bytes = b""
    prob: list[list[int]] = field(default_factory=lambda: [[32768] * (1 << TABLE_BITS) for _ in MODELS])
    count: list[list[int]] = field(default_factory=lambda: [[0] * (1 << TABLE_BITS) for _ in MODELS])
    weight: list[list[int]] = field(default_factory=lambda: [[4000] * 8 for _ in range(NODES)])
    uses: list[int] = field(default_factory=lambda: [0] * NODES)
    keys: list[int] = field(default_factory=lambda: [0] * len(MODELS))
    r1: int = 0
    r2: int = 0
    level: int = 0
    previous: int = 0
    low: int = 0
    high: int = 0xFFFFFFFF
    x: int = 0
    pos: int = 0
    out: bytearray = field(default_factory=bytearray)

    def start_decoding(self) -> None:
        for _ in range(4):
            self.x = (self.x << 8) | self.next_byte()

    def next_byte(self) -> int:
        byte = self.data[self.pos] if self.pos < len(self.data) else 0
        self.pos += 1
        return byte

    def set_contexts(self, t: int) -> None:
        phase = t % self.period if self.period > 1 else 0
        c1 = signed_class(self.r1)
        self.keys = [
            0,
            mix_key(1, c1),
            mix_key(4, unsigned(self.r1)),
            mix_key(mix_key(5, unsigned(self.r1)), unsigned(self.r2)),
            mix_key(10, unsigned(self.previous)),
            mix_key(12, phase),
            mix_key(mix_key(13, phase), c1),
        ]

    def push(self, v: int) -> None:
        self.r2, self.r1 = self.r1, v
        self.level = signed(unsigned(self.level + v))
        if self.modulus > 0:
            self.level %= self.modulus
        self.previous = v if self.levels else self.level

    def code_bit(self, node: int, fine: int, rest: bool, bit: int | None) -> int:
        """Encode `bit`, or decode one when it is None; returns the bit."""
        slots, inputs = [], []
        for m, (salt, keeps) in enumerate(MODELS):
            key = mix_key(salt, 99) if rest and not keeps else self.keys[m]
            slot = (((key + fine * K2) & MASK64) * K1 & MASK64) >> (64 - TABLE_BITS)
            slots.append(slot)
            seen = self.count[m][slot] > 0
            inputs.append(STRETCH[self.prob[m][slot] // 16] if seen else 0)
        inputs.append(256)
        dot = sum(x * w for x, w in zip(inputs, self.weight[node], strict=True))
        p = min(max(squash(min(max(dot >> 16, -2047), 2047)), 1), 4095)
        mid = self.low + ((self.high - self.low) * p >> 12)
        y = int(self.x <= mid) if bit is None else bit
        if y:
            self.high = mid
        else:
            self.low = mid + 1
        self.learn(node, slots, inputs, p, y)
        while (self.low ^ self.high) & 0xFF000000 == 0:
            if bit is None:
                self.x = ((self.x << 8) & 0xFFFFFFFF) | self.next_byte()
            else:
                self.out.append(self.high >> 24)
            self.low = (self.low << 8) & 0xFFFFFFFF
            self.high = ((self.high << 8) & 0xFFFFFFFF) | 255
        return y

    def learn(self, node: int, slots: list[int], inputs: list[int], p: int, y: int) -> None:
        rate = 576 + 40960 // (64 + self.uses[node] // 16)
        self.uses[node] += 1
        err = ((y << 12) - p) * rate
        weights = self.weight[node]
        for i, x in enumerate(inputs):
            weights[i] = min(max(weights[i] + (x * err >> 20), -(1 << 22)), 1 << 22)
        target = 65535 if y else 0
        for m, slot in enumerate(slots):
            n = self.count[m][slot]
            self.prob[m][slot] += (target - self.prob[m][slot]) * (131072 // (2 * n + 3)) >> 16
            self.count[m][slot] = min(n + 1, 255)

    def code_value(self, value: int | None) -> int:
        """Encode `value`, or decode one when it is None; returns the value."""
        u = abs(value) if value is not None else 0
        k = 0
        for j in range(64):
            if not self.code_bit(min(j, 23), j, False, None if value is None else int(u.bit_length() > j)):
                break
            k += 1
        negative = 0
        if k > 0:
            negative = self.code_bit(
                24 + min(k, 7), 100 + k, False, None if value is None else int(value < 0)
            )
        prefix = 1 if k > 0 else 0
        top = 0
        for pos, b in enumerate(range(k - 2, -1, -1)):
            rest = False
            if k <= WHOLE_CLASSES:
                fine = 1000 + (1 << k) + prefix + (negative << 30)
            elif pos < 2:
                fine = 200000 + 4 * k + (2 + top if pos == 1 else 0) + (negative << 30)
            else:
                fine = 300000 + 64 * k + pos
                rest = True
            kc = min(k, 15)
            node = 32 + kc if pos == 0 else 48 + 2 * kc + top if pos == 1 else 80 + 8 * kc + min(pos, 7)
            y = self.code_bit(node, fine, rest, None if value is None else (u >> b) & 1)
            prefix = prefix << 1 | y
            if pos == 0:
                top = y
        if value is not None:
            return value
        if prefix > 1 << 63 or (prefix == 1 << 63 and not negative):
            raise OutOfRange(f"a magnitude of {prefix}")
        return -prefix if negative else prefix


def encode(values: Sequence[int], params: Sequence[int]) -> bytes:
    """The method-8 coding of `values` with params (period, history, modulus)."""
    if not values:
        return b""
    coder = Coder(params[0], bool(params[1]), params[2])
    for t, v in enumerate(values):
        coder.set_contexts(t)
        coder.code_value(v)
        coder.push(v)
    coder.out.append((coder.low >> 24) + 1)
    return bytes(coder.out)


def decode(data: bytes, n: int, params: Sequence[int]) -> list[int]:
    """The `n` values of a method-8 column; OutOfRange for a magnitude beyond int64."""
    coder = Coder(params[0], bool(params[1]), params[2], data)
    if n == 0:
        return []
    coder.start_decoding()
    values = []
    for t in range(n):
        coder.set_contexts(t)
        v = coder.code_value(None)
        coder.push(v)
        values.append(v)
    return values
