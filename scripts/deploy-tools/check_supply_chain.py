"""Issue 13 parts 2 and 5: what the workflows, Dockerfiles and image defaults
must say. Used by check-policy.py (subcommands workflows, pins, images);
each function takes parsed artifacts and returns one line per violation.
"""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

import yaml

SHA40 = re.compile(r"^[0-9a-f]{40}$")
DIGEST = re.compile(r"@sha256:[0-9a-f]{64}$")


def load_workflow(path: Path) -> dict:
    doc = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    if True in doc and "on" not in doc:  # YAML 1.1 reads `on:` as a boolean key
        doc["on"] = doc.pop(True)
    return doc


def _steps(job: dict) -> list[dict]:
    return job.get("steps") or []


def _uses(step: dict) -> str:
    return str(step.get("uses", ""))


def _needs(job: dict) -> list[str]:
    n = job.get("needs") or []
    return [n] if isinstance(n, str) else list(n)


def _depends_on(jobs: dict, name: str, target: str, seen: set | None = None) -> bool:
    seen = seen or set()
    for n in _needs(jobs.get(name, {})):
        if n == target or (n not in seen and _depends_on(jobs, n, target, seen | {n})):
            return True
    return False


def _is_trivy_gate(step: dict) -> bool:
    w = step.get("with") or {}
    sev = {s.strip().upper() for s in str(w.get("severity", "")).split(",")}
    return "trivy" in _uses(step) and {"HIGH", "CRITICAL"} <= sev and str(w.get("exit-code")) == "1" \
        and str(w.get("format", "table")) != "cyclonedx"


def _pushes(step: dict) -> bool:
    w = step.get("with") or {}
    return ("build-push-action" in _uses(step) and str(w.get("push")).lower() == "true") \
        or bool(re.search(r"\bdocker (image )?push\b", str(step.get("run", ""))))


def check_image_jobs(name: str, wf: dict, need_sbom: bool) -> list[str]:
    """Every job that builds images: scan on HIGH and CRITICAL (exit code 1)
    before any step that pushes; in CD also a CycloneDX SBOM attached after."""
    problems = []
    for jname, job in (wf.get("jobs") or {}).items():
        steps = _steps(job)
        builds = [i for i, s in enumerate(steps) if "build-push-action" in _uses(s)]
        if not builds:
            continue
        where = f"{name} job {jname}"
        scans = [i for i, s in enumerate(steps) if _is_trivy_gate(s)]
        pushes = [i for i, s in enumerate(steps) if _pushes(s)]
        if not scans:
            problems.append(f"{where}: no Trivy scan failing on HIGH and CRITICAL (severity HIGH,CRITICAL, exit-code 1)")
        elif pushes and min(pushes) < min(scans):
            problems.append(f"{where}: step {min(pushes) + 1} pushes before the Trivy scan (step {min(scans) + 1})")
        if need_sbom:
            sboms = [i for i, s in enumerate(steps)
                     if "cyclonedx" in str((s.get("with") or {}).get("format", "")) or
                     re.search(r"(syft|trivy).*cyclonedx", str(s.get("run", "")))]
            attach = [i for i, s in enumerate(steps)
                      if re.search(r"(cosign attest|oras attach).*cyclonedx", str(s.get("run", "")))]
            if not sboms:
                problems.append(f"{where}: no CycloneDX SBOM")
            if not attach or not pushes or min(attach) < min(pushes):
                problems.append(f"{where}: the SBOM is not attached to the pushed image "
                                f"(cosign attest --type cyclonedx / oras attach after the push)")
    return problems


def check_cd(wf: dict, name: str = "cd.yml") -> list[str]:
    problems = []
    on = wf.get("on") or {}
    triggers = set(on) if isinstance(on, dict) else {on} if isinstance(on, str) else set(on)
    run = (on.get("workflow_run") or {}) if isinstance(on, dict) else {}
    if triggers != {"workflow_run"}:
        problems.append(f"{name}: must run only on workflow_run of CI, runs on {sorted(triggers)} "
                        f"(a push or manual run deploys a commit CI never passed)")
    if "CI" not in (run.get("workflows") or []) or run.get("types") != ["completed"]:
        problems.append(f"{name}: workflow_run must be `workflows: [CI]`, `types: [completed]`")
    jobs = wf.get("jobs") or {}
    gates = [j for j, job in jobs.items()
             if re.search(r"github\.event\.workflow_run\.conclusion\s*==\s*'success'", str(job.get("if", "")))]
    if not gates:
        problems.append(f"{name}: no job requires github.event.workflow_run.conclusion == 'success'")
    gate = gates[0] if gates else None
    for jname, job in jobs.items():
        if gate and jname != gate and not _depends_on(jobs, jname, gate):
            problems.append(f"{name} job {jname}: does not need the gate job {gate!r}: it runs even when CI failed")
        for s in _steps(job):
            if _uses(s).startswith("actions/checkout"):
                ref = str((s.get("with") or {}).get("ref", ""))
                if "workflow_run.head_sha" not in ref and not (gate and f"needs.{gate}.outputs.sha" in ref):
                    problems.append(f"{name} job {jname}: checkout must be of the commit CI tested "
                                    f"(ref: github.event.workflow_run.head_sha), is {ref or 'the default'}")
            text = str(s.get("run", ""))
            if re.search(r"scripts/deploy\s", text) and "--state-file" not in text:
                problems.append(f"{name} job {jname}: scripts/deploy without --state-file: "
                                f"a rollback cannot tell whether an upgrade was attempted")
            if re.search(r"scripts/rollback\s", text):
                if "--if-attempted" not in text:
                    problems.append(f"{name} job {jname}: scripts/rollback without --if-attempted: "
                                    f"it also runs when nothing was deployed")
                if "failure()" not in str(s.get("if", "")):
                    problems.append(f"{name} job {jname}: the rollback step must run only if: failure()")
    prod = [j for j, job in jobs.items()
            if (job.get("environment") or {}).get("name", job.get("environment")) == "production"]
    if not prod:
        problems.append(f"{name}: no job deploys to the `production` environment (its required reviewers gate prod)")
    for j in prod:
        if not any(_depends_on(jobs, j, s) for s in jobs if (jobs[s].get("environment") or {}).get("name") == "staging"):
            problems.append(f"{name} job {j}: production must need the staging deploy")
    problems += check_image_jobs(name, wf, need_sbom=True)
    return problems


def check_ci(wf: dict, name: str = "ci.yml") -> list[str]:
    problems = check_image_jobs(name, wf, need_sbom=False)
    live = [j for j, job in (wf.get("jobs") or {}).items()
            if any(re.search(r"check-live-metrics|scripts/test\b|check-deploy\s+--scrape", str(s.get("run", "")))
                   for s in _steps(job))]
    if not live:
        problems.append(f"{name}: no job checks metric names against a live scrape of the running services "
                        f"(scripts/deploy-tools/check-live-metrics or scripts/test)")
    return problems


def check_action_pins(workflows: dict[str, dict]) -> list[str]:
    problems = []
    for name, wf in workflows.items():
        for jname, job in (wf.get("jobs") or {}).items():
            refs = [_uses(s) for s in _steps(job)] + ([job["uses"]] if "uses" in job else [])
            for ref in filter(None, refs):
                if ref.startswith("./"):
                    continue
                if ref.startswith("docker://"):
                    if not DIGEST.search(ref):
                        problems.append(f"{name} job {jname}: {ref} is not pinned by digest")
                    continue
                _, _, version = ref.partition("@")
                if not SHA40.match(version):
                    problems.append(f"{name} job {jname}: uses {ref}: pin a full 40-hex commit SHA "
                                    f"(with the tag as a comment)")
    return problems


def dockerfile_bases(text: str) -> list[str]:
    """Base images of FROM lines, without stage references and --platform."""
    stages, bases = set(), []
    for line in text.replace("\\\n", " ").splitlines():
        m = re.match(r"\s*FROM\s+(?:--platform=\S+\s+)?(\S+)(?:\s+AS\s+(\S+))?", line, re.I)
        if not m:
            continue
        if m.group(1) not in stages:
            bases.append(m.group(1))
        if m.group(2):
            stages.add(m.group(2))
    return bases


def docker_run_images(wf: dict) -> list[str]:
    """Images of `docker run` commands in a workflow's run steps."""
    out = []
    for job in (wf.get("jobs") or {}).values():
        for s in _steps(job):
            for m in re.finditer(r"docker run\b(.*)", " ".join(str(s.get("run", "")).split())):
                tokens = m.group(1).split()
                i = 0
                while i < len(tokens) and tokens[i].startswith("-"):
                    # options with a separate value: -v X, -e X, -w X, --name X, ...
                    i += 1 if "=" in tokens[i] or tokens[i] in ("--rm", "-t", "-i", "-it", "--init") else 2
                if i < len(tokens):
                    out.append(tokens[i].strip("'\""))
    return out


def compose_third_party_images(config: dict) -> list[str]:
    return sorted({s["image"] for s in config.get("services", {}).values()
                   if s.get("image") and "/grodt-" not in s["image"]})


def read_pending(path: Path) -> dict[str, str]:
    """deploy/pins-pending.txt: `image reason...` per line; # comments."""
    pending = {}
    if path.exists():
        for line in path.read_text(encoding="utf-8").splitlines():
            line = line.split("#", 1)[0].strip()
            if line:
                ref, _, reason = line.partition(" ")
                pending[ref] = reason.strip()
    return pending


def check_image_pins(refs: dict[str, list[str]], pending: dict[str, str]) -> tuple[list[str], list[str]]:
    """(problems, notes). Every image reference is pinned by digest, or listed
    in the pending file (a digest that cannot be looked up here; the note
    names it on every run). A listed reference that is pinned or no longer
    used must leave the list."""
    problems, notes, used = [], [], set()
    for where, images in refs.items():
        for ref in images:
            if DIGEST.search(ref):
                if ref.split("@")[0] in pending:
                    problems.append(f"{where}: {ref} is pinned now: remove {ref.split('@')[0]} from the pending list")
                continue
            used.add(ref)
            if ref in pending:
                notes.append(f"{where}: {ref} NOT pinned by digest (pending: {pending[ref]})")
            else:
                problems.append(f"{where}: {ref} is not pinned by digest (image@sha256:<digest>, tag as a comment)")
    for ref in sorted(set(pending) - used):
        if not any(ref == r.split("@")[0] for images in refs.values() for r in images):
            problems.append(f"pending list: {ref} is used nowhere: remove it")
    return problems, notes


# ---- image tags: the defaults point at tags CD publishes ---------------------

def cargo_version(root: Path) -> str:
    return tomllib.loads((root / "Cargo.toml").read_text(encoding="utf-8"))["workspace"]["package"]["version"]


def published_tags(cd: dict, version: str) -> tuple[set[str], set[str], set[str]]:
    """(literal tags, symbolic kinds {'sha', 'version'}, image names) CD pushes."""
    literal, kinds, names = set(), set(), set()
    for job in (cd.get("jobs") or {}).values():
        steps = _steps(job)
        if not any(_pushes(s) for s in steps):
            continue
        for inc in ((job.get("strategy") or {}).get("matrix") or {}).get("include", []):
            names.add(f"grodt-{inc['target']}")
        texts = [str((s.get("with") or {}).get("tags", "")) for s in steps if "build-push-action" in _uses(s)]
        texts += [str(s.get("run", "")) for s in steps if _pushes(s)]
        for text in texts:
            for tag in re.findall(r":(\$\{\{[^}]*\}\}|\$\w+|\"?[\w.-]+)\s*\"?$", text, re.M):
                tag = tag.strip('"')
                if "sha" in tag.lower():
                    kinds.add("sha")
                elif "version" in tag.lower():
                    kinds.add("version")
                elif not tag.startswith("$"):
                    literal.add(tag)
    if "version" in kinds:
        literal.add(version)
    return literal, kinds, names


def check_image_defaults(cd: dict, compose_text: str, values: dict, chart: dict, version: str) -> list[str]:
    problems = []
    literal, kinds, names = published_tags(cd, version)
    if "sha" not in kinds:
        problems.append("cd.yml: images are not tagged with the commit SHA")
    if version not in literal:
        problems.append(f"cd.yml: images are not tagged with the version {version} (workspace version)")
    if chart.get("appVersion") != version:
        problems.append(f"Chart.yaml appVersion {chart.get('appVersion')!r} != workspace version {version!r}")
    helm_tag = values.get("image", {}).get("tag") or chart.get("appVersion")
    if helm_tag not in literal:
        problems.append(f"helm: default image tag {helm_tag!r} is never published by CD (publishes "
                        f"{sorted(literal)} and the commit SHA)")
    for m in re.finditer(r"image:\s*\$\{GRODT_IMAGE_REGISTRY:-([^}]*)\}/([\w-]+):\$\{GRODT_IMAGE_TAG:-([^}]*)\}",
                         compose_text):
        registry, image, tag = m.groups()
        if tag not in literal:
            problems.append(f"compose: {image} defaults to tag {tag!r}, never published by CD "
                            f"(publishes {sorted(literal)} and the commit SHA)")
        if names and image not in names:
            problems.append(f"compose: {image} is not an image CD builds ({sorted(names)})")
        if registry != values.get("image", {}).get("registry"):
            problems.append(f"compose: default registry {registry!r} != helm image.registry "
                            f"{values.get('image', {}).get('registry')!r}")
    return problems


def release_profile(cargo_text: str) -> list[str]:
    prof = tomllib.loads(cargo_text).get("profile", {}).get("release", {})
    problems = []
    if prof.get("strip") not in ("symbols", True):
        problems.append(f"Cargo.toml [profile.release]: strip = \"symbols\" wanted, is {prof.get('strip')!r}")
    if prof.get("lto") != "thin":
        problems.append(f"Cargo.toml [profile.release]: lto = \"thin\" wanted, is {prof.get('lto')!r}")
    return problems


def check_dependabot(doc: dict) -> list[str]:
    """Dependabot keeps the pins fresh: Actions, the Dockerfile, Compose, Cargo."""
    have = {(u.get("package-ecosystem"), u.get("directory")) for u in doc.get("updates", [])}
    want = {("github-actions", "/"), ("docker", "/deploy/docker"), ("docker-compose", "/compose"), ("cargo", "/")}
    return [f"dependabot.yml: no {eco} updates for {d}" for eco, d in sorted(want - have)]
