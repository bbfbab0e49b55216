"""`.env.example` lists exactly the environment variables that `beacon/settings.py` reads."""
import ast
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
ENV_READERS = {"env_bool", "env_list", "get", "getenv"}


def variables_read(source: str) -> set[str]:
    """Names passed as first argument to os.environ.get / os.getenv / env_* or used as os.environ[...]."""
    names = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Call) and node.args and isinstance(node.args[0], ast.Constant):
            function = node.func
            name = function.attr if isinstance(function, ast.Attribute) else getattr(function, "id", "")
            is_environ = not isinstance(function, ast.Attribute) or ast.unparse(function.value) in {"os.environ", "os"}
            if name in ENV_READERS and is_environ and isinstance(node.args[0].value, str):
                names.add(node.args[0].value)
        elif isinstance(node, ast.Subscript) and ast.unparse(node.value) == "os.environ":
            if isinstance(node.slice, ast.Constant):
                names.add(node.slice.value)
    return names


def variables_documented(text: str) -> set[str]:
    return set(re.findall(r"^#?\s*([A-Z][A-Z0-9_]*)=", text, re.MULTILINE))


def test_env_example_lists_every_variable_settings_read():
    read = variables_read((ROOT / "beacon" / "settings.py").read_text())
    documented = variables_documented((ROOT / ".env.example").read_text())
    assert read, "no environment variable found in settings: the parser is broken"
    assert read - documented == set(), "read by settings but missing from .env.example"
    assert documented - read == set(), "in .env.example but read by nothing"


def test_the_comparison_sees_a_missing_and_a_stale_variable():
    settings_source = 'import os\nA = os.environ.get("NEW_VAR", "")\nB = env_bool("FLAG", default=False)\n'
    assert variables_read(settings_source) == {"NEW_VAR", "FLAG"}
    assert variables_documented("FLAG=1\n# OLD_VAR=x\n") == {"FLAG", "OLD_VAR"}
