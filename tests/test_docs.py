"""The README stays true: every setting documented, and CI runs the test command it gives."""

import re
from pathlib import Path

from api.settings import Settings

ROOT = Path(__file__).resolve().parent.parent
README = (ROOT / "README.md").read_text()


def test_every_setting_is_documented():
    documented = set(re.findall(r"`(PRISM_[A-Z_0-9]+)`", README))
    expected = {f"PRISM_{name.upper()}" for name in Settings.model_fields}
    assert expected - documented == set()
    client_variables = {"PRISM_CONFIG", "PRISM_URL", "PRISM_API_KEY"}  # read by the server's loader, the CLI and prism_client
    assert documented - expected - client_variables == set()


def test_ci_runs_the_readme_test_command():
    commands = re.findall(r"^(make \w+)\s+# (.*)$", README, flags=re.MULTILINE)
    test_command = next(command for command, comment in commands if "test" in comment)
    ci_lines = [line.strip() for line in (ROOT / ".ci" / "run").read_text().splitlines() if line.strip() and not line.startswith("#")]
    assert test_command in ci_lines
