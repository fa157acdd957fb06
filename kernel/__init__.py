"""The kernel: what every layer shares and that imports nothing of ours.

Domain model (`kernel.model`), the one error tree (`kernel.errors`), the capped exponential backoff
(`kernel.backoff`) and the wall clock in milliseconds (`kernel.wallclock`). `drivers/` and `buffer/`
import only this package (and their libraries); `gateway/` composes them (docs/decisions.md, "Layers").
"""
