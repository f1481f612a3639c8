"""The documented code examples run and do what they say (docs/losses.md, linked from the README)."""

import os
import re

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
LOSSES_DOC = os.path.join("docs", "losses.md")


def _python_block(section: str) -> str:
  with open(os.path.join(ROOT, LOSSES_DOC), encoding="utf-8") as f:
    text = f.read()
  body = text.split(f"## {section}\n", 1)[1].split("\n## ", 1)[0]
  return re.search(r"```python\n(.*?)```", body, re.S).group(1)


@pytest.mark.slow  # trains end to end
def test_image_text_example_trains_the_two_towers_and_the_learned_scale_and_bias():
  scope = {}
  exec(compile(_python_block("Image-text losses"), LOSSES_DOC, "exec"), scope)  # pylint: disable=exec-used
  losses, params = scope["losses"], scope["params"]
  assert len(losses) == 30 and losses[-1] < 0.5 * losses[0], losses
  assert float(params["bias"]) != -10.0 and float(params["scale"]) != float(scope["jnp"].log(10.0))
