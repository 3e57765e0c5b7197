"""Signal handling: the first SIGTERM/SIGINT is recorded, a second one exits, handlers are restored."""
import os
import signal

import pytest

from dreamer_trl.run.preemption import Preemption


@pytest.mark.parametrize("sig, code", [(signal.SIGTERM, 143), (signal.SIGINT, 130)])
def test_records_the_signal_and_its_exit_code(sig, code):
    before = signal.getsignal(sig)
    with Preemption() as p:
        assert p.requested is None and p.exit_code == 0
        os.kill(os.getpid(), sig)
        assert p.requested == sig and p.exit_code == code
        with pytest.raises(SystemExit) as exc:
            os.kill(os.getpid(), sig)
        assert exc.value.code == code
    assert signal.getsignal(sig) is before
