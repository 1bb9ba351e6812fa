"""How an approved action runs on board: pluggable, dry-run unless policy says otherwise.

An action runs as up to four steps: pre-check, run, post-check and, when run or post-check
fails, rollback. The dry-run executor runs nothing and says so in every step's output, so
a fleet can watch the whole loop before anyone lets it touch a device.
"""

from __future__ import annotations

import shlex
import subprocess
from dataclasses import dataclass
from typing import Literal, Protocol

from shared.policy import ExecutorPolicy

Step = Literal["pre_check", "run", "post_check", "rollback"]
_OUTPUT_MAX = 400


@dataclass(frozen=True)
class StepResult:
    step: Step
    ok: bool
    output: str

    def line(self) -> str:
        return f"{self.step} {'ok' if self.ok else 'FAILED'}: {self.output}"


class Executor(Protocol):
    name: str

    def step(self, action: str, target: str, step: Step) -> StepResult | None:
        """The step's outcome; None when this action has no such step."""
        ...


class DryRunExecutor:
    name = "dry-run"

    def step(self, action: str, target: str, step: Step) -> StepResult | None:
        if step == "rollback":
            return StepResult(step, True, f"dry-run: would roll back {action} on {target}")
        return StepResult(
            step, True, f"dry-run: would {step.replace('_', '-')} {action} on {target}"
        )


class ShellExecutor:
    """Runs the command line policy gives for (action, step), `{target}` filled in; a
    missing run command is a failure, missing checks and rollbacks are skipped."""

    name = "shell"

    def __init__(self, policy: ExecutorPolicy) -> None:
        self.commands, self.timeout_s = policy.commands, policy.timeout_s

    def step(self, action: str, target: str, step: Step) -> StepResult | None:
        line = self.commands.get(action, {}).get(step)
        if line is None:
            return StepResult(step, False, f"no command for {action}") if step == "run" else None
        argv = [part.format(target=target) for part in shlex.split(line)]
        try:
            done = subprocess.run(
                argv, capture_output=True, text=True, timeout=self.timeout_s, check=False
            )
        except subprocess.TimeoutExpired:
            return StepResult(step, False, f"timed out after {self.timeout_s:g} s")
        except OSError as exc:
            return StepResult(step, False, f"could not start: {exc}")
        output = (done.stdout + done.stderr).strip()[-_OUTPUT_MAX:]
        return StepResult(step, done.returncode == 0, f"exit {done.returncode}: {output}")


def open_executor(policy: ExecutorPolicy) -> Executor:
    return ShellExecutor(policy) if policy.kind == "shell" else DryRunExecutor()
