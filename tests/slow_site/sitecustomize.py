"""Test-only: with LOUPE_TEST_SLOW_CAPTION=S each photo's caption takes S seconds longer, so a
browser test can watch a scan of tiny models move and stop it mid-way. The models stay real;
cancel is honoured between those pauses as it is between generation steps."""
import os

_delay = float(os.environ.get("LOUPE_TEST_SLOW_CAPTION") or 0)
if _delay:
    import time

    from engine import inference
    from engine.errors import Cancelled

    _infer = inference.Engine.infer

    def infer(self, task, inputs, options, cancel=None, on_step=None):
        if task == "caption":
            for i in range(len(inputs)):
                end = time.monotonic() + _delay
                while time.monotonic() < end:
                    if cancel is not None and cancel.is_set():
                        raise Cancelled("scan cancelled")
                    time.sleep(0.02)
                if on_step is not None:  # the pause stands for generation: say how far it is
                    on_step((i + 1) / (len(inputs) + 1))
        return _infer(self, task, inputs, options, cancel=cancel, on_step=on_step)

    inference.Engine.infer = infer
