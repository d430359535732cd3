"""The README opens with the two commands, and .ci/run runs exactly the README's test command."""
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def _commands() -> list[str]:
    lines = (ROOT / "README.md").read_text().splitlines()
    return [lines[i + 1] for i, line in enumerate(lines) if line.strip() == "```bash"][:2]


def test_ci_runs_the_readme_test_command():
    main, test = _commands()
    assert "torch==2.14.1 torchvision==0.29.1" in main and "arx sweep" in main and "arx report" in main
    assert "pytest" in test
    ci = (ROOT / ".ci" / "run").read_text().splitlines()
    assert test in ci
