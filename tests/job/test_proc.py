import os
import shutil
import subprocess

import pytest

from raysr.job._proc import stat_fields

pytestmark = pytest.mark.skipif(not os.path.isdir("/proc"), reason="reads /proc (Linux)")


def test_fields_follow_a_command_name_with_spaces_and_parentheses(tmp_path):
    odd = tmp_path / "sl) (e p"  # the command name in /proc/PID/stat is the file's name
    shutil.copy(shutil.which("sleep"), odd)
    child = subprocess.Popen([str(odd), "30"])
    try:
        fields = stat_fields(child.pid)
        assert fields is not None and fields[0] in "RSD" and int(fields[1]) == os.getpid()
        assert int(fields[19]) >= int(stat_fields(os.getpid())[19])  # started after this process
    finally:
        child.kill()
        child.wait()
    assert stat_fields(child.pid) is None  # reaped: no such process
