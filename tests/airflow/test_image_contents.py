"""The Airflow image's Python layer, reproduced without Docker.

This machine has no Docker engine, so `images/airflow/Dockerfile` is only ever built on
GitHub (`.github/workflows/kind-e2e.yml`). This module replays what the Dockerfile does,
with real package installers, and reads every input from the Dockerfile itself, so an
edit that would break the image build breaks this test first:

- the build context: each COPY source, filtered by the ignore file BuildKit uses for this
  Dockerfile (a COPY of something the ignore file drops fails, as in `docker build`);
- the builder stage's `pip wheel --no-deps .`, run as `uv build --wheel` (the same
  isolated PEP 517 build with the same hatchling backend, but from uv's warm cache);
- the final stage's RUN steps in order: `pip install` steps go to `uv pip install` into a
  fresh virtualenv (the requirement strings and `--no-deps` exactly as written, ARGs
  substituted), every other step (the import check, compileall, the loop that runs each
  DAG file) runs in bash with that virtualenv first on PATH and container paths mapped
  into a temporary root.

The fresh virtualenv has none of the providers and packages the official base image also
ships, so passing here proves our requirement list alone is enough for our DAGs.
"""

from __future__ import annotations

import ast
import json
import os
import posixpath
import re
import shlex
import shutil
import subprocess
import sys
import time
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

# 20-29 s here, warm or cold uv cache (docs/airflow.md); the timeout leaves room for a slow
# index on a cold machine (~140 distributions, ~245 MB to download).
pytestmark = [pytest.mark.integration, pytest.mark.slow, pytest.mark.timeout(600)]

ROOT = Path(__file__).resolve().parents[2]
DOCKERFILE = ROOT / "images" / "airflow" / "Dockerfile"
DAGS = ROOT / "dags"
OUR_PACKAGES = ("starling", "starling_operators")
# The official image's WORKDIR and AIRFLOW_HOME; a stage without WORKDIR runs RUN there.
AIRFLOW_HOME = "/opt/airflow"
# pip options the replay knows how to honour; anything else must be taught here first
# rather than silently dropped.
KNOWN_PIP_OPTIONS = frozenset({"--no-deps", "--no-cache-dir"})


# ---- reading the Dockerfile -------------------------------------------------------------


@dataclass(frozen=True)
class Instruction:
    keyword: str
    value: str


@dataclass
class Stage:
    name: str | None
    args: dict[str, str] = field(default_factory=dict)
    env: dict[str, str] = field(default_factory=dict)
    instructions: list[Instruction] = field(default_factory=list)


_VARIABLE = re.compile(r"\$\{(\w+)\}|\$(\w+)")


def expand(value: str, variables: dict[str, str]) -> str:
    """`${NAME}` / `$NAME` as the shell sees them in RUN; an unset name is an error here
    (the shell would make it empty and pip would fail on e.g. `apache-airflow==`)."""
    return _VARIABLE.sub(lambda m: variables[m.group(1) or m.group(2)], value)


def logical_lines(text: str) -> list[Instruction]:
    instructions: list[Instruction] = []
    pending = ""
    for raw in text.splitlines():
        line = raw.strip()
        # Docker drops comment lines even inside a continued instruction (the ENV block).
        if not line or line.startswith("#"):
            continue
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        keyword, _, value = (pending + line).partition(" ")
        instructions.append(Instruction(keyword.upper(), value.strip()))
        pending = ""
    assert not pending, "the Dockerfile ends inside a continued instruction"
    return instructions


def parse_dockerfile(text: str) -> list[Stage]:
    """Stages with their ARG/ENV values and instructions in order."""
    global_args: dict[str, str] = {}
    stages: list[Stage] = []
    for instruction in logical_lines(text):
        scope = stages[-1].args if stages else global_args
        if instruction.keyword == "ARG":
            name, has_default, default = instruction.value.partition("=")
            # `ARG NAME` inside a stage re-exposes the global default.
            scope[name] = expand(default, scope) if has_default else global_args[name]
        elif instruction.keyword == "FROM":
            words = expand(instruction.value, global_args).split()
            alias = words[2] if len(words) == 3 and words[1].upper() == "AS" else None
            stages.append(Stage(alias))
        elif instruction.keyword == "ENV":
            stage = stages[-1]
            for pair in shlex.split(instruction.value):
                key, sep, value = pair.partition("=")
                assert sep, f"ENV {pair!r}: only the KEY=value form is replayed"
                stage.env[key] = expand(value, {**stage.args, **stage.env})
        else:
            stages[-1].instructions.append(instruction)
    return stages


def dockerfile_stages() -> dict[str | None, Stage]:
    stages = parse_dockerfile(DOCKERFILE.read_text())
    named = {stage.name: stage for stage in stages[:-1]}
    named[None] = stages[-1]  # the image is the last stage
    return named


def install_steps(stage: Stage) -> list[list[str]]:
    """Every `pip install` of the stage, tokenized with its ARGs substituted."""
    variables = {**stage.args, **stage.env}
    found = []
    for instruction in stage.instructions:
        if instruction.keyword != "RUN":
            continue
        for step in re.split(r"\s*&&\s*", instruction.value):
            tokens = shlex.split(step)
            if tokens[:2] == ["pip", "install"]:
                found.append([expand(token, variables) for token in tokens[2:]])
    return found


def dag_module_references() -> set[str]:
    """Our modules the DAG files need: those they import and those they name by dotted
    path (the provider loads `apply_function` callables by import string)."""
    modules: set[str] = set()
    for path in DAGS.glob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.module:
                modules.add(node.module)
            elif isinstance(node, ast.Import):
                modules.update(alias.name for alias in node.names)
            elif (
                isinstance(node, ast.Constant)
                and isinstance(node.value, str)
                and re.fullmatch(r"starling(_operators)?(\.\w+)+", node.value)
            ):
                modules.add(node.value.rsplit(".", 1)[0])
    return {name for name in modules if name.split(".")[0] in OUR_PACKAGES}


# ---- the build context ------------------------------------------------------------------


@dataclass(frozen=True)
class IgnorePattern:
    regex: re.Pattern[str]
    exception: bool


def ignore_file() -> Path:
    # BuildKit reads `<Dockerfile>.dockerignore` beside the Dockerfile instead of the
    # context's .dockerignore when it exists.
    specific = DOCKERFILE.with_name(DOCKERFILE.name + ".dockerignore")
    return specific if specific.exists() else ROOT / ".dockerignore"


def _glob_to_regex(pattern: str) -> re.Pattern[str]:
    """Docker's matching (moby/patternmatcher): Go's filepath.Match plus `**`."""
    out, i = "^", 0
    while i < len(pattern):
        if pattern.startswith("**", i):
            i += 2
            if pattern.startswith("/", i):
                i += 1
                out += "(.*/)?" if i < len(pattern) else ".*"
            else:
                out += ".*"
            continue
        char = pattern[i]
        assert char not in "[\\", f"ignore pattern {pattern!r}: classes/escapes not replayed"
        out += {"*": "[^/]*", "?": "[^/]"}.get(char, re.escape(char))
        i += 1
    return re.compile(out + "$")


def ignore_patterns(text: str) -> list[IgnorePattern]:
    patterns = []
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        exception = line.startswith("!")
        cleaned = posixpath.normpath(line.removeprefix("!").strip()).lstrip("/")
        patterns.append(IgnorePattern(_glob_to_regex(cleaned), exception))
    return patterns


def in_context(relative: str, patterns: list[IgnorePattern]) -> bool:
    """Docker's rule: patterns apply in order, the last one matching the path or one of
    its parent directories decides."""
    parts = relative.split("/")
    candidates = [relative] + ["/".join(parts[:n]) for n in range(1, len(parts))]
    excluded = False
    for pattern in patterns:
        # An exception can only re-include an excluded path, a pattern only exclude.
        if pattern.exception != excluded:
            continue
        if any(pattern.regex.match(candidate) for candidate in candidates):
            excluded = not pattern.exception
    return not excluded


# ---- replaying the stages ---------------------------------------------------------------


@dataclass
class Replay:
    builder_root: Path
    image_root: Path
    venv: Path
    wheel: Path
    requirements: list[str]
    shell_env: dict[str, str]
    seconds: dict[str, float] = field(default_factory=dict)
    shell_steps: list[str] = field(default_factory=list)

    @property
    def python(self) -> Path:
        return self.venv / "bin" / "python"


def container_path(root: Path, path: str, workdir: str) -> Path:
    return root / posixpath.normpath(posixpath.join(workdir, path)).lstrip("/")


def run(command: list[str], *, env: dict[str, str] | None = None, cwd: Path | None = None) -> str:
    """Run a command, failing with its output; returns stdout."""
    result = subprocess.run(command, check=False, capture_output=True, text=True, env=env, cwd=cwd)
    assert result.returncode == 0, (
        f"{shlex.join(command)} exited {result.returncode}\n{result.stdout}\n{result.stderr}"
    )
    return result.stdout


def map_paths(text: str, path_map: dict[str, Path]) -> str:
    """Container paths (the COPY destinations) to their places under the replay's root,
    in one pass so a mapped path is never mapped again."""
    if not path_map:
        return text
    longest_first = sorted(path_map, key=len, reverse=True)
    alternatives = "|".join(re.escape(path) for path in longest_first)
    return re.sub(alternatives, lambda m: str(path_map[m.group(0)]), text)


def copy_instruction(
    instruction: Instruction, root: Path, workdir: str, stage_roots: dict[str, Path] | None = None
) -> None:
    """COPY from the build context (filtered like `docker build`) or `--from=<stage>`."""
    tokens = shlex.split(instruction.value)
    flags = [token for token in tokens if token.startswith("--")]
    *sources, dest = [token for token in tokens if not token.startswith("--")]
    from_stage = next((f.split("=", 1)[1] for f in flags if f.startswith("--from=")), None)
    target = container_path(root, dest, workdir)
    into_directory = dest.endswith("/") or len(sources) > 1
    if from_stage is not None:
        assert stage_roots is not None
        source_root = stage_roots[from_stage]
        for source in sources:
            shutil.copytree(container_path(source_root, source, "/"), target, dirs_exist_ok=True)
        return
    ignore = ignore_file()
    patterns = ignore_patterns(ignore.read_text())
    for source in sources:
        path = ROOT / source
        files = [path] if path.is_file() else sorted(p for p in path.rglob("*") if p.is_file())
        kept = [p for p in files if in_context(p.relative_to(ROOT).as_posix(), patterns)]
        assert kept, (
            f"COPY {source}: not in the build context ({ignore.relative_to(ROOT)} excludes "
            "it), so `docker build` fails here"
        )
        for file in kept:
            if path.is_file():
                destination = target / file.name if into_directory else target
            else:
                destination = target / file.relative_to(path)
            destination.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(file, destination)


def uv(*arguments: str) -> str:
    uv_binary = shutil.which("uv")
    assert uv_binary, "uv is not on PATH (`make setup` installs it)"
    # The replay must not pick up the project venv that runs the tests.
    env = {key: value for key, value in os.environ.items() if key != "VIRTUAL_ENV"}
    result = subprocess.run(
        [uv_binary, *arguments], check=False, capture_output=True, text=True, env=env
    )
    output = result.stdout + result.stderr  # uv reports on stderr
    assert result.returncode == 0, (
        f"uv {shlex.join(arguments)} exited {result.returncode}\n{output}"
    )
    return output


def replay_builder(stage: Stage, root: Path) -> Path:
    workdir = "/"
    wheel_dir = root
    for instruction in stage.instructions:
        if instruction.keyword == "WORKDIR":
            workdir = posixpath.join(workdir, instruction.value)
        elif instruction.keyword == "COPY":
            copy_instruction(instruction, root, workdir)
        elif instruction.keyword == "RUN":
            tokens = shlex.split(instruction.value)
            if tokens[0] == "chown":
                continue  # ownership only; the replay runs as the current user
            assert tokens[:2] == ["pip", "wheel"], f"builder step not replayed: {tokens}"
            assert "--no-deps" in tokens, "the builder must wheel only our own code"
            wheel_dir = container_path(root, tokens[tokens.index("--wheel-dir") + 1], workdir)
            project = container_path(root, tokens[-1], workdir)
            # Same frontend contract as `pip wheel .`: an isolated build env with the
            # [build-system] requires, the wheel built straight from the tree (no sdist).
            uv("build", "--wheel", "--python", sys.executable, "--out-dir", str(wheel_dir),
               str(project))  # fmt: skip
    wheels = sorted(wheel_dir.glob("*.whl"))
    assert len(wheels) == 1, wheels
    return wheels[0]


def replay_image(stage: Stage, replay: Replay, stage_roots: dict[str, Path]) -> None:
    root = replay.image_root
    workdir = AIRFLOW_HOME
    path_map: dict[str, Path] = {}
    for instruction in stage.instructions:
        if instruction.keyword == "WORKDIR":
            workdir = posixpath.join(workdir, instruction.value)
        elif instruction.keyword == "COPY":
            copy_instruction(instruction, root, workdir, stage_roots)
            dest = shlex.split(instruction.value)[-1]
            absolute = posixpath.normpath(posixpath.join(workdir, dest))
            path_map[absolute] = container_path(root, dest, workdir)
        elif instruction.keyword == "RUN":
            for step in re.split(r"\s*&&\s*", instruction.value):
                replay_step(step, stage, replay, path_map, container_path(root, ".", workdir))


def replay_step(
    step: str, stage: Stage, replay: Replay, path_map: dict[str, Path], cwd: Path
) -> None:
    tokens = shlex.split(step)
    if tokens[:2] == ["pip", "install"]:
        arguments = [expand(token, {**stage.args, **stage.env}) for token in tokens[2:]]
        options = [a for a in arguments if a.startswith("-")]
        assert set(options) <= KNOWN_PIP_OPTIONS, f"pip options not replayed: {options}"
        targets = [a for a in arguments if not a.startswith("-")]
        # pip compiles bytecode as it installs (uv does not unless asked); doing the same
        # keeps the replay faithful and makes the DAG runs below import compiled code.
        install = ["pip", "install", "--python", str(replay.python), "--compile-bytecode"]
        started = time.monotonic()
        if "--no-deps" in options:
            # Local wheels named by container path (a glob, as the shell expands it).
            files: list[Path] = []
            for target in targets:
                local = Path(map_paths(target, path_map))
                files += sorted(local.parent.glob(local.name))
            assert files, f"no file matches {targets}"
            uv(*install, "--no-deps", *map(str, files))
            replay.seconds["uv pip install --no-deps <our wheel>"] = time.monotonic() - started
        else:
            replay.requirements += targets
            uv(*install, *targets)
            replay.seconds["uv pip install <Dockerfile requirements>"] = time.monotonic() - started
        return
    local_step = map_paths(step, path_map)
    started = time.monotonic()
    run(["bash", "-euo", "pipefail", "-c", local_step], env=replay.shell_env, cwd=cwd)
    replay.seconds[f"RUN {step[:70]}"] = time.monotonic() - started
    replay.shell_steps.append(local_step)


@pytest.fixture(scope="module")
def image(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Replay]:
    started = time.monotonic()
    stages = dockerfile_stages()
    base = tmp_path_factory.mktemp("airflow-image")
    builder_root, image_root = base / "builder", base / "image"
    image_stage = stages[None]

    wheel_started = time.monotonic()
    wheel = replay_builder(stages["builder"], builder_root)
    wheel_seconds = time.monotonic() - wheel_started

    venv = image_root / "venv"
    venv_started = time.monotonic()
    # A plain `uv venv` has no system site packages: only what the Dockerfile installs.
    uv("venv", "--python", sys.executable, str(venv))
    venv_seconds = time.monotonic() - venv_started

    airflow_home = image_root / AIRFLOW_HOME.lstrip("/")
    airflow_home.mkdir(parents=True, exist_ok=True)
    shell_env = {
        "PATH": f"{venv / 'bin'}:/usr/local/bin:/usr/bin:/bin",
        "VIRTUAL_ENV": str(venv),
        "HOME": str(image_root / "home" / "airflow"),
        "LANG": "C.UTF-8",
        # The image's AIRFLOW_HOME (so the default dags folder is the copied dags/) and a
        # SQLite DB there, as tests/airflow/conftest.py sets for the dev venv.
        "AIRFLOW_HOME": str(airflow_home),
        "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": f"sqlite:///{airflow_home}/airflow.db",
        # RUN sees the stage's ARGs and ENV as environment variables.
        **image_stage.args,
        **image_stage.env,
    }
    replay = Replay(builder_root, image_root, venv, wheel, [], shell_env)
    replay.seconds["wheel (uv build --wheel)"] = wheel_seconds
    replay.seconds["uv venv"] = venv_seconds
    replay_image(image_stage, replay, {"builder": builder_root})
    replay.seconds["whole replay"] = time.monotonic() - started

    installed = uv("pip", "freeze", "--python", str(replay.python)).count("==")
    megabytes = sum(f.stat().st_size for f in venv.rglob("*") if f.is_file()) / 1e6
    print(
        f"\nAirflow image replay: {len(replay.requirements)} requirements from the Dockerfile,"
        f" {installed} distributions installed, venv {megabytes:.0f} MB"
    )
    for what, seconds in replay.seconds.items():
        print(f"  {seconds:6.1f} s  {what}")
    yield replay


# ---- what the image holds ---------------------------------------------------------------


def wheel_names(image: Replay) -> list[str]:
    with zipfile.ZipFile(image.wheel) as archive:
        return archive.namelist()


def test_wheel_holds_both_packages_and_nothing_else(image: Replay) -> None:
    names = wheel_names(image)
    top_level = {name.split("/")[0] for name in names}
    assert top_level == {*OUR_PACKAGES, image.wheel.name.split("-py")[0] + ".dist-info"}
    for package in OUR_PACKAGES:
        assert f"{package}/__init__.py" in names
        assert f"{package}/py.typed" in names  # the image's code is typed for DAG authors
    assert not [n for n in names if n.startswith(("tests/", "dags/")) or "conftest" in n]
    assert not [n for n in names if "__pycache__" in n or n.endswith(".pyc")]


def test_wheel_holds_every_source_file_of_the_checkout(image: Replay) -> None:
    in_wheel = {n for n in wheel_names(image) if n.split("/")[0] in OUR_PACKAGES}
    in_checkout = {
        f"{source.name}/{path.relative_to(source).as_posix()}"
        for source in (ROOT / "services" / "starling", ROOT / "operators" / "starling_operators")
        for path in source.rglob("*")
        if path.is_file() and "__pycache__" not in path.parts and path.suffix != ".pyc"
    }
    assert in_wheel == in_checkout


def test_wheel_holds_the_modules_the_dags_use(image: Replay) -> None:
    names = set(wheel_names(image))
    modules = dag_module_references()
    assert modules, "the DAG files import nothing of ours?"
    for module in modules:
        path = module.replace(".", "/")
        assert {f"{path}.py", f"{path}/__init__.py"} & names, module


def test_requirements_come_from_the_dockerfile(image: Replay) -> None:
    stage = dockerfile_stages()[None]
    steps = install_steps(stage)
    assert image.requirements == [a for a in steps[0] if not a.startswith("-")]
    pins = {re.split(r"[\[=]", r)[0]: r.split("==")[1] for r in image.requirements}
    assert pins["apache-airflow"] == stage.args["AIRFLOW_VERSION"]
    assert all(re.fullmatch(r"[\d.]+", version) for version in pins.values()), pins
    # Our wheel goes in last, without dependencies, as in the image.
    assert "--no-deps" in steps[-1]


def test_fresh_venv_is_isolated_and_consistent(image: Replay) -> None:
    config = (image.venv / "pyvenv.cfg").read_text()
    assert re.search(r"^include-system-site-packages = false$", config, flags=re.M)
    # `pip check`: every installed distribution's requirements are met, including our
    # wheel's own (installed with --no-deps, so the Dockerfile's list must cover them).
    out = uv("pip", "check", "--python", str(image.python))
    assert "Checked" in out and "incompatib" not in out, out


def test_our_packages_import_from_the_venv_not_the_checkout(image: Replay) -> None:
    out = run(
        [
            str(image.python),
            "-c",
            "import json, starling, starling_operators;"
            "print(json.dumps([starling.__file__, starling_operators.__file__]))",
        ],
        env=image.shell_env,
        cwd=image.image_root,
    )
    site_packages = image.venv / "lib"
    for location in json.loads(out.splitlines()[-1]):
        assert Path(location).is_relative_to(site_packages), location


def test_dockerfile_checks_ran_in_the_venv(image: Replay) -> None:
    joined = "\n".join(image.shell_steps)
    assert "import starling_operators.functions, starling_operators.operators" in joined
    # The triggerer imports the login watcher's trigger class by dotted path.
    assert "starling_operators.triggers" in joined
    assert "compileall" in joined
    copied = image.image_root / AIRFLOW_HOME.lstrip("/") / "dags"
    # The loop `for f in /opt/airflow/dags/*.py` ran over the copied DAG files.
    assert f"for f in {copied}/*.py" in joined
    assert sorted(p.name for p in copied.glob("*.py")) == sorted(p.name for p in DAGS.glob("*.py"))


def test_the_scheduler_parses_every_dag_in_the_venv(image: Replay) -> None:
    """Beyond the Dockerfile's `python <file>`: Airflow's own DagBag, as the image's
    DAG processor loads the folder (this also loads the provider registry the login
    watcher's trigger needs)."""
    dags_folder = image.image_root / AIRFLOW_HOME.lstrip("/") / "dags"
    script = (
        "import json\n"
        "from airflow.dag_processing.dagbag import DagBag\n"
        f"bag = DagBag(dag_folder={str(dags_folder)!r})\n"
        "print(json.dumps({'errors': {k: str(v) for k, v in bag.import_errors.items()},"
        " 'dags': sorted(bag.dag_ids)}))\n"
    )
    out = run([str(image.python), "-c", script], env=image.shell_env, cwd=image.image_root)
    parsed = json.loads(out.strip().splitlines()[-1])
    assert parsed["errors"] == {}
    assert len(parsed["dags"]) == len(list(DAGS.glob("*.py"))), parsed["dags"]
