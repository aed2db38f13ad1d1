#!/usr/bin/env python3
"""Static checks of the Docker deployment files, for CI (no Docker needed).

    python3 tests/ops/check_deploy.py [--compose F] [--dockerfile F] [--dockerignore F] [--config F]

Checks docker-compose.yml (structure, references, MYELIN_* variables against
config.example.toml), the Dockerfile (instructions and image hygiene) and .dockerignore.
Prints every problem as `file:line: message` and exits 1, or prints one OK line and exits 0.
"""

from __future__ import annotations

import argparse
import json
import re
import shlex
import sys
import tomllib
from dataclasses import dataclass, field
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[2]

# MYELIN_* variables that are not config keys but still mean something to the server
# (mirrors NON_CONFIG_ENV in homeserver/src/config.rs): the config file's path.
NON_CONFIG_ENV = {"MYELIN_CONFIG"}

# The port the server listens on inside the image (MYELIN_LISTEN in the Dockerfile).
CLIENT_PORT = "8008"

DOCKERFILE_INSTRUCTIONS = set(
    "ADD ARG CMD COPY ENTRYPOINT ENV EXPOSE FROM HEALTHCHECK LABEL MAINTAINER ONBUILD RUN SHELL STOPSIGNAL"
    " USER VOLUME WORKDIR".split()
)

COMPOSE_TOP_LEVEL = {"version", "name", "include", "services", "networks", "volumes", "configs", "secrets"}


@dataclass
class Report:
    # (file, line, message); printed grouped by file, in line order.
    problems: list[tuple[str, int, str]] = field(default_factory=list)

    def add(self, path: Path, line: int | None, message: str) -> None:
        self.problems.append((display(path), line or 0, message))

    def lines(self) -> list[str]:
        files = list(dict.fromkeys(file for file, _, _ in self.problems))
        ordered = sorted(self.problems, key=lambda p: (files.index(p[0]), p[1]))
        return [f"{file}:{line}: {message}" if line else f"{file}: {message}" for file, line, message in ordered]


def display(path: Path) -> str:
    try:
        return str(path.resolve().relative_to(REPO))
    except ValueError:
        return str(path)


# ---- config.example.toml ------------------------------------------------------------------


@dataclass
class EnvNames:
    """The MYELIN_* names the configuration accepts."""

    source: str  # the config file, for messages
    exact: set[str]
    # Tables whose keys are chosen by the user (e.g. keys.old_verify_keys): any name below them.
    prefixes: set[str]

    def problem(self, name: str) -> str | None:
        """Why `name` is not accepted, or None if it is (or is not a MYELIN_* name at all)."""
        if not name.startswith("MYELIN_") or name in self.exact or name in NON_CONFIG_ENV:
            return None
        if any(name.startswith(p) for p in self.prefixes):
            return None
        return f"`{name}` is not an option in {self.source}"


def config_env_names(config_path: Path) -> EnvNames:
    with config_path.open("rb") as f:
        config = tomllib.load(f)
    names = EnvNames(display(config_path), set(), set())
    collect_env_names(config, "MYELIN_", names)
    return names


def collect_env_names(table: dict, prefix: str, names: EnvNames) -> None:
    # `[section] key` becomes MYELIN_SECTION__KEY, as in the server's env_provider.
    for key, value in table.items():
        name = prefix + key.upper()
        if isinstance(value, dict):
            if value:
                collect_env_names(value, name + "__", names)
            else:
                names.prefixes.add(name + "__")
        else:
            names.exact.add(name)


# ---- docker-compose.yml -------------------------------------------------------------------


class LineLoader(yaml.SafeLoader):
    """A SafeLoader that remembers the line of every mapping key and sequence item, so problems
    can point at a line: `lines[id(container)][key or index]`."""

    def __init__(self, stream):
        super().__init__(stream)
        self.lines: dict[int, dict] = {}


def _construct_mapping(loader: LineLoader, node: yaml.MappingNode) -> dict:
    mapping = loader.construct_mapping(node, deep=True)
    loader.lines[id(mapping)] = {loader.construct_object(k): k.start_mark.line + 1 for k, _ in node.value}
    return mapping


def _construct_sequence(loader: LineLoader, node: yaml.SequenceNode) -> list:
    sequence = loader.construct_sequence(node, deep=True)
    loader.lines[id(sequence)] = {i: item.start_mark.line + 1 for i, item in enumerate(node.value)}
    return sequence


LineLoader.add_constructor("tag:yaml.org,2002:map", _construct_mapping)
LineLoader.add_constructor("tag:yaml.org,2002:seq", _construct_sequence)


@dataclass
class Yaml:
    data: object
    lines: dict[int, dict]

    def line(self, container: object, key: object) -> int | None:
        return self.lines.get(id(container), {}).get(key)


def load_yaml(path: Path) -> Yaml:
    loader = LineLoader(path.read_text())
    try:
        return Yaml(loader.get_single_data(), loader.lines)
    finally:
        loader.dispose()


def check_compose(path: Path, env_names: EnvNames, report: Report) -> int:
    """Returns the number of services checked."""
    try:
        doc = load_yaml(path)
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        report.add(path, mark.line + 1 if mark else None, f"not valid YAML: {e}")
        return 0
    top = doc.data
    if not isinstance(top, dict):
        report.add(path, 1, "the top level must be a mapping")
        return 0
    for key in top:
        if key not in COMPOSE_TOP_LEVEL and not str(key).startswith("x-"):
            report.add(path, doc.line(top, key), f"unknown top-level key `{key}`")

    services = top.get("services")
    if not isinstance(services, dict) or not services:
        report.add(path, doc.line(top, "services"), "needs a non-empty top-level `services` mapping")
        return 0
    check = ServiceCheck(path, doc, services, top.get("volumes") or {}, env_names, report)
    for name, service in services.items():
        check.service(name, service)
    return len(services)


DEPENDS_ON_CONDITIONS = {"service_started", "service_healthy", "service_completed_successfully"}


@dataclass
class ServiceCheck:
    """Checks one service at a time against the rest of the file."""

    path: Path
    doc: Yaml
    services: dict
    declared_volumes: dict
    env_names: EnvNames
    report: Report

    def service(self, name: str, service: object) -> None:
        line = self.doc.line(self.services, name)
        if not isinstance(service, dict):
            self.problem(line, f"service `{name}` must be a mapping")
            return
        if "image" not in service and "build" not in service:
            self.problem(line, f"service `{name}` has neither `image` nor `build`")
        self.depends_on(name, service)
        self.volumes(service)
        self.ports(name, service)
        self.environment(service)
        if "healthcheck" in service:
            problem = healthcheck_problem(service["healthcheck"])
            if problem:
                self.problem(self.doc.line(service, "healthcheck"), f"service `{name}`: {problem}")

    def problem(self, line: int | None, message: str) -> None:
        self.report.add(self.path, line, message)

    def depends_on(self, name: str, service: dict) -> None:
        # Short form: a list of names. Long form: a mapping of name -> {condition: ...}.
        value = service.get("depends_on") or []
        entries = value.items() if isinstance(value, dict) else ((v, None) for v in value)
        for index, (dependency, options) in enumerate(entries):
            line = self.doc.line(value, dependency if isinstance(value, dict) else index)
            if dependency not in self.services:
                self.problem(line, f"service `{name}` depends on unknown service `{dependency}`")
            condition = options.get("condition") if isinstance(options, dict) else None
            if condition is not None and condition not in DEPENDS_ON_CONDITIONS:
                self.problem(line, f"unknown depends_on condition `{condition}`")

    def volumes(self, service: dict) -> None:
        volumes = service.get("volumes") or []
        for index, entry in enumerate(volumes):
            source = named_volume(entry)
            if source is not None and source not in self.declared_volumes:
                message = f"named volume `{source}` is not declared under top-level `volumes`"
                self.problem(self.doc.line(volumes, index), message)

    def ports(self, name: str, service: dict) -> None:
        ports = service.get("ports") or []
        for index, entry in enumerate(ports):
            problem = port_problem(entry)
            if problem:
                self.problem(self.doc.line(ports, index), f"service `{name}`: {problem}")

    def environment(self, service: dict) -> None:
        # Mapping form (KEY: value) or list form (- KEY=value, or - KEY to pass it through).
        value = service.get("environment") or {}
        if isinstance(value, dict):
            names = [(str(k), self.doc.line(value, k)) for k in value]
        else:
            names = [(str(v).split("=", 1)[0], self.doc.line(value, i)) for i, v in enumerate(value)]
        for var, line in names:
            if problem := self.env_names.problem(var):
                self.problem(line, problem)


def named_volume(entry: object) -> str | None:
    """The named volume a service volume entry uses, or None for bind mounts and anonymous
    volumes. Compose treats a source starting with `.`, `/` or `~` as a host path."""
    if isinstance(entry, dict):
        if entry.get("type", "volume") != "volume":
            return None
        source = entry.get("source")
    else:
        parts = str(entry).split(":")
        source = parts[0] if len(parts) > 1 else None
    if not source or source[0] in "./~" or "$" in source:
        return None
    return source


# [ip:]host:container[/protocol], each port a number or a range like 9000-9010.
PORT = r"\d{1,5}(?:-\d{1,5})?"
IP = r"[0-9.]+|\[[0-9a-fA-F:]+\]"
PORT_MAPPING = re.compile(rf"^(?:(?:{IP}):)?(?P<host>{PORT}):(?P<container>{PORT})(?:/(?:tcp|udp))?$")


def port_problem(entry: object) -> str | None:
    # Unquoted YAML like 22:22 can be read as a base-60 number, hence strings only.
    if not isinstance(entry, str):
        return f'port {entry!r} must be a quoted string "host:container"'
    match = PORT_MAPPING.match(entry)
    if not match:
        return f'port `{entry}` is not of the form "host:container"'
    numbers = re.findall(r"\d+", f"{match['host']} {match['container']}")
    if any(not 1 <= int(n) <= 65535 for n in numbers):
        return f"port `{entry}` is out of range"
    return None


def healthcheck_problem(healthcheck: object) -> str | None:
    if not isinstance(healthcheck, dict):
        return "healthcheck must be a mapping"
    if healthcheck.get("disable"):
        return None
    test = healthcheck.get("test")
    if not test:
        return "healthcheck has no `test`"
    if isinstance(test, list) and test[0] not in ("CMD", "CMD-SHELL", "NONE"):
        return "healthcheck `test` list must start with CMD, CMD-SHELL or NONE"
    return None


# ---- Dockerfile ---------------------------------------------------------------------------


@dataclass
class Instruction:
    line: int
    keyword: str  # upper-cased
    args: str  # everything after the keyword, continuation lines joined

    def flags_and_rest(self) -> tuple[list[str], str]:
        """Leading `--flag=value` options (RUN --mount, COPY --from, HEALTHCHECK --interval)."""
        flags, rest = [], self.args
        while rest.startswith("--"):
            flag, _, rest = rest.partition(" ")
            flags.append(flag)
            rest = rest.lstrip()
        return flags, rest


def parse_dockerfile(text: str) -> list[Instruction]:
    """Logical instructions: comment lines dropped (also inside continuations, as Docker does),
    lines ending in a backslash joined with the next. A `# escape=` directive is not supported:
    the Dockerfiles here use the default backslash."""
    instructions, pending, start = [], [], 0
    for number, raw in enumerate(text.splitlines(), start=1):
        stripped = raw.strip()
        if not stripped or stripped.startswith("#"):
            continue
        if not pending:
            start = number
        if stripped.endswith("\\"):
            pending.append(stripped[:-1].strip())
            continue
        pending.append(stripped)
        instructions.append(make_instruction(start, " ".join(p for p in pending if p)))
        pending = []
    if pending:
        instructions.append(make_instruction(start, " ".join(p for p in pending if p)))
    return instructions


def make_instruction(line: int, text: str) -> Instruction:
    keyword, _, args = text.partition(" ")
    return Instruction(line, keyword.upper(), args.strip())


def check_dockerfile(path: Path, env_names: EnvNames, report: Report) -> tuple[int, int]:
    """Returns (stages, instructions)."""
    instructions = parse_dockerfile(path.read_text())
    for ins in instructions:
        if ins.keyword not in DOCKERFILE_INSTRUCTIONS:
            report.add(path, ins.line, f"unknown instruction `{ins.keyword}`")
        for name in env_set_by(ins):
            if problem := env_names.problem(name):
                report.add(path, ins.line, problem)

    first = next((ins for ins in instructions if ins.keyword != "ARG"), None)
    if first is None or first.keyword != "FROM":
        report.add(path, first.line if first else None, "the first instruction (after ARGs) must be FROM")
        return 0, len(instructions)

    global_args = {}
    for ins in instructions:
        if ins.keyword == "FROM":
            break
        name, _, default = ins.args.partition("=")
        global_args[name.strip()] = default.strip().strip('"')

    stages = split_stages(instructions)
    stage_names: set[str] = set()
    for stage in stages:
        check_base_image(path, stage[0], global_args, stage_names, report)
    for ins in instructions:
        check_instruction(path, ins, report)
    check_final_stage(path, stages[-1], report)
    return len(stages), len(instructions)


def split_stages(instructions: list[Instruction]) -> list[list[Instruction]]:
    stages: list[list[Instruction]] = []
    for ins in instructions:
        if ins.keyword == "FROM":
            stages.append([])
        if stages:
            stages[-1].append(ins)
    return stages


def check_base_image(path: Path, from_: Instruction, global_args: dict, stage_names: set, report: Report) -> None:
    """Base images must be pinned: a tag other than `latest`, or a digest. `stage_names`
    collects the names of earlier stages, which FROM may also refer to."""
    _, rest = from_.flags_and_rest()
    words = rest.split()
    if not words:
        report.add(path, from_.line, "FROM without an image")
        return
    image = substitute(words[0], global_args)
    if len(words) >= 3 and words[1].upper() == "AS":
        stage_names.add(words[2].lower())
    if image.lower() in stage_names or image == "scratch":
        return  # an earlier stage, or the empty image: nothing to pin
    if "$" in image:
        report.add(path, from_.line, f"base image `{words[0]}` uses a variable with no default")
        return
    if "@" in image:
        return  # pinned by digest
    name_part = image.rsplit("/", 1)[-1]  # a registry host:port is not a tag
    tag = name_part.partition(":")[2]
    if not tag:
        report.add(path, from_.line, f"base image `{image}` is not pinned to a tag")
    elif tag == "latest":
        report.add(path, from_.line, f"base image `{image}` uses the moving `latest` tag")


def substitute(text: str, variables: dict) -> str:
    """$NAME and ${NAME} from global ARG defaults; unknown ones are left in place."""

    def value(match):
        name = match.group(1) or match.group(2)
        return variables.get(name) or match.group(0)

    return re.sub(r"\$\{(\w+)\}|\$(\w+)", value, text)


def check_instruction(path: Path, ins: Instruction, report: Report) -> None:
    if ins.keyword in ("ENTRYPOINT", "CMD") and not is_exec_form(ins.args):
        # Shell form runs under /bin/sh -c, which does not pass SIGTERM on to the server.
        report.add(path, ins.line, f'{ins.keyword} must use the exec form ["..."]')
    elif ins.keyword == "ADD":
        _, rest = ins.flags_and_rest()
        if re.search(r"(^|\s)(https?://|git@)", rest):
            report.add(path, ins.line, "ADD of a remote URL: download in a RUN step with a checksum instead")
    elif ins.keyword == "RUN":
        for problem in apt_problems(ins):
            report.add(path, ins.line, problem)


def is_exec_form(args: str) -> bool:
    try:
        value = json.loads(args)
    except json.JSONDecodeError:
        return False
    return isinstance(value, list) and bool(value) and all(isinstance(v, str) for v in value)


def apt_problems(run: Instruction) -> list[str]:
    flags, command = run.flags_and_rest()
    problems = []
    installs = [c for c in re.split(r"&&|\|\||;|\|", command) if re.search(r"\bapt(-get)?\b.*\binstall\b", c)]
    if any("--no-install-recommends" not in c for c in installs):
        problems.append("apt-get install without --no-install-recommends")
    # The package lists are dead weight in a layer, unless they live in a cache mount.
    lists_cached = any(f.startswith("--mount=") and "/var/lib/apt/lists" in f for f in flags)
    if installs and not lists_cached and not re.search(r"\brm\s+-\w*\s+[^&;|]*/var/lib/apt/lists", command):
        problems.append("apt-get install without `rm -rf /var/lib/apt/lists/*` in the same RUN")
    return problems


def check_final_stage(path: Path, stage: list[Instruction], report: Report) -> None:
    final_from = stage[0]
    users = [ins for ins in stage if ins.keyword == "USER"]
    if not users:
        report.add(path, final_from.line, "the final stage has no USER: the server would run as root")
    else:
        user = users[-1].args.split(":")[0].strip()
        if user in ("root", "0"):
            report.add(path, users[-1].line, f"the final stage runs as `{user}`")

    healthchecks = [ins for ins in stage if ins.keyword == "HEALTHCHECK"]
    if not healthchecks or healthchecks[-1].args.upper() == "NONE":
        report.add(path, final_from.line, "the final stage has no HEALTHCHECK")

    exposed = {p.split("/")[0] for ins in stage if ins.keyword == "EXPOSE" for p in ins.args.split()}
    if CLIENT_PORT not in exposed:
        report.add(path, final_from.line, f"the final stage does not EXPOSE {CLIENT_PORT}")


def env_set_by(ins: Instruction) -> list[str]:
    """Names an ENV instruction sets (`ENV A=1 B="x y"`, or the old `ENV A 1`)."""
    if ins.keyword != "ENV":
        return []
    try:
        words = shlex.split(ins.args)
    except ValueError:  # unbalanced quotes: Docker would refuse the file anyway
        words = ins.args.split()
    if words and "=" not in words[0]:
        return words[:1]
    return [word.split("=", 1)[0] for word in words]


# ---- .dockerignore ------------------------------------------------------------------------


def check_dockerignore(path: Path, report: Report) -> None:
    # target/ is gigabytes of build output; sending it would make every build crawl.
    if not path.exists():
        report.add(path, None, "missing: the build context would include target/")
        return
    excluded = False
    for raw in path.read_text().splitlines():
        pattern = raw.strip()
        if not pattern or pattern.startswith("#"):
            continue
        negated = pattern.startswith("!")
        normal = pattern.lstrip("!").strip().removeprefix("./").strip("/").removeprefix("**/")
        if normal in ("target", "target/**"):
            excluded = not negated
    if not excluded:
        report.add(path, None, "does not exclude target/")


# ---- main ---------------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--compose", type=Path, default=REPO / "docker-compose.yml")
    parser.add_argument("--dockerfile", type=Path, default=REPO / "Dockerfile")
    parser.add_argument("--dockerignore", type=Path, help="default: .dockerignore beside the Dockerfile")
    parser.add_argument("--config", type=Path, default=REPO / "config.example.toml")
    args = parser.parse_args(argv)
    dockerignore = args.dockerignore or args.dockerfile.parent / ".dockerignore"

    report = Report()
    for path in (args.compose, args.dockerfile, args.config):
        if not path.is_file():
            report.add(path, None, "no such file")
    if report.problems:
        return finish(report, "")

    try:
        env_names = config_env_names(args.config)
    except tomllib.TOMLDecodeError as e:
        report.add(args.config, None, f"not valid TOML: {e}")
        return finish(report, "")
    services = check_compose(args.compose, env_names, report)
    stages, instructions = check_dockerfile(args.dockerfile, env_names, report)
    check_dockerignore(dockerignore, report)

    summary = (
        f"{display(args.compose)} ({services} services), {display(args.dockerfile)} "
        f"({stages} stages, {instructions} instructions), {display(dockerignore)}"
    )
    return finish(report, summary)


def finish(report: Report, summary: str) -> int:
    for problem in report.lines():
        print(problem)
    if report.problems:
        print(f"check_deploy: {len(report.problems)} problem(s)")
        return 1
    print(f"check_deploy: OK: {summary}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
