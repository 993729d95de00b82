"""Issue 13 part 1 rules for the deployment files: who may get in.

- every GRODT service has the gRPC tokens file mounted and
  GRODT_AUTH__TOKENS_FILE pointing at it (Compose: all environments, since the
  containers listen on 0.0.0.0; Helm: staging and prod, dev may run without);
- Redis requires a password: Compose's redis-server loads an ACL file (or
  --requirepass) and the services read the password from a secret file;
  Helm (staging/prod) takes the Redis URL from a Secret;
- the services connect to Postgres as the application role, and the migration
  step as the migration role;
- prod: gRPC over TLS on every service (certificate and key from secrets) and
  health checks that speak it (`grodt health --tls-ca`);
- Redis over TLS (compose/docker-compose.redis-tls.yml, optional): Redis
  listens on its TLS port only, with its certificate and key from secrets and
  a healthcheck that speaks TLS, and every service connects with rediss:// and
  a CA file it has mounted (`check_compose_redis_tls`).
"""

from __future__ import annotations

from grodt_services import SERVICES

NAMES = [s.name for s in SERVICES]
COMPOSE_TOKENS = "/run/secrets/grpc_tokens"
HELM_TOKENS = "/run/secrets/grodt/auth/tokens"


def _compose_secret_targets(svc: dict) -> set[str]:
    """File names under /run/secrets/ of the service's secrets."""
    targets = set()
    for s in svc.get("secrets") or []:
        target = s if isinstance(s, str) else (s.get("target") or s.get("source") or "")
        targets.add(target.removeprefix("/run/secrets/"))
    return targets


def check_compose_security(env: str, config: dict) -> list[str]:
    problems = []
    services = config.get("services", {})
    redis = services.get("redis", {})
    command = redis.get("command") or []
    if "--aclfile" not in command and "--requirepass" not in command:
        problems.append(f"compose {env}: redis requires no password (no --aclfile or --requirepass)")
    elif "--aclfile" in command:
        acl = command[command.index("--aclfile") + 1] if command.index("--aclfile") + 1 < len(command) else ""
        if not acl.startswith("/run/secrets/") or acl.rsplit("/", 1)[-1] not in _compose_secret_targets(redis):
            problems.append(f"compose {env}: redis's ACL file {acl!r} is not a mounted secret")
    pg = services.get("postgres", {})
    superuser = (pg.get("environment") or {}).get("POSTGRES_USER", "postgres")
    migrate_user = _db_user((services.get("migrate", {}).get("environment") or {}).get("GRODT_DATABASE__URL"))
    if not any(v.get("target") == "/docker-entrypoint-initdb.d/10-roles.sh" for v in pg.get("volumes") or []):
        problems.append(f"compose {env}: postgres does not create the migration and application roles "
                        "(deploy/postgres/init-roles.sh at /docker-entrypoint-initdb.d/10-roles.sh)")
    if env in ("staging", "prod"):
        for port in (services.get("jaeger") or {}).get("ports") or []:
            if isinstance(port, dict) and int(port.get("target", 0)) == 16686:
                host_ip = port.get("host_ip") or ""
                if host_ip not in ("127.0.0.1", "::1"):
                    problems.append(f"compose {env}: the Jaeger UI (no authentication) is published on "
                                    f"{host_ip or 'every interface'}: bind it to 127.0.0.1 (reach it through a tunnel)")
    for name in NAMES:
        svc = services.get(name)
        if svc is None:
            continue  # check_compose reports it
        where = f"compose {env}: {name}"
        user = _db_user((svc.get("environment") or {}).get("GRODT_DATABASE__URL"))
        if user in (superuser, migrate_user):
            problems.append(f"{where}: connects to Postgres as {user!r}, the "
                            f"{'superuser' if user == superuser else 'migration role'}: "
                            "want the application role (DML only)")
        env_vars = svc.get("environment") or {}
        targets = _compose_secret_targets(svc)
        if env == "prod":
            problems += _compose_tls(where, svc, env_vars, targets)
        pw = env_vars.get("GRODT_REDIS__PASSWORD_FILE", "")
        if not pw.startswith("/run/secrets/") or pw.rsplit("/", 1)[-1] not in targets:
            problems.append(f"{where}: connects to Redis without a password "
                            "(GRODT_REDIS__PASSWORD_FILE must name a mounted secret)")
        tokens = env_vars.get("GRODT_AUTH__TOKENS_FILE")
        if tokens != COMPOSE_TOKENS or "grpc_tokens" not in targets:
            problems.append(f"{where}: no gRPC tokens file (secret grpc_tokens mounted and "
                            f"GRODT_AUTH__TOKENS_FILE={COMPOSE_TOKENS}): it would refuse every call")
    return problems


def check_compose_redis_tls(env: str, config: dict) -> list[str]:
    """The Redis-over-TLS overlay merged onto `env`: nothing on plaintext."""
    problems = []
    services = config.get("services", {})
    redis = services.get("redis", {})
    command = redis.get("command") or []
    where = f"compose {env} + redis-tls: redis"

    def arg(flag: str) -> str | None:
        return command[command.index(flag) + 1] if flag in command[:-1] else None

    if arg("--port") != "0":
        problems.append(f"{where}: the plaintext port is open (want --port 0), is {arg('--port')!r}")
    if not arg("--tls-port"):
        problems.append(f"{where}: no --tls-port")
    targets = _compose_secret_targets(redis)
    for flag in ("--tls-cert-file", "--tls-key-file"):
        path = arg(flag) or ""
        if not path.startswith("/run/secrets/") or path.removeprefix("/run/secrets/") not in targets:
            problems.append(f"{where}: {flag} must be a mounted secret, is {path!r}")
    if "--tls" not in " ".join(redis.get("healthcheck", {}).get("test", [])):
        problems.append(f"{where}: the healthcheck does not speak TLS (redis-cli --tls)")
    for name in NAMES:
        svc = services.get(name, {})
        env_vars = svc.get("environment") or {}
        here = f"compose {env} + redis-tls: {name}"
        if not str(env_vars.get("GRODT_REDIS__URL", "")).startswith("rediss://"):
            problems.append(f"{here}: GRODT_REDIS__URL must be rediss://, is {env_vars.get('GRODT_REDIS__URL')!r}")
        ca = str(env_vars.get("GRODT_REDIS__CA_FILE", ""))
        if not ca.startswith("/run/secrets/") or ca.removeprefix("/run/secrets/") not in _compose_secret_targets(svc):
            problems.append(f"{here}: GRODT_REDIS__CA_FILE must name a mounted secret, is {ca!r}")
    return problems


def _compose_tls(where: str, svc: dict, env_vars: dict, targets: set[str]) -> list[str]:
    problems = []
    for key in ("GRODT_GRPC__TLS__CERT_FILE", "GRODT_GRPC__TLS__KEY_FILE"):
        path = env_vars.get(key, "")
        if not path.startswith("/run/secrets/") or path.removeprefix("/run/secrets/") not in targets:
            problems.append(f"{where}: gRPC is plaintext in prod: {key} must name a mounted secret")
    test = svc.get("healthcheck", {}).get("test", [])
    ca = test[test.index("--tls-ca") + 1] if "--tls-ca" in test[:-1] else ""
    if not ca.startswith("/run/secrets/") or ca.removeprefix("/run/secrets/") not in targets:
        problems.append(f"{where}: healthcheck must speak TLS (grodt health --tls-ca <mounted CA secret>)")
    return problems


def _db_user(url: str | None) -> str | None:
    """The user of a postgres:// URL (None without one)."""
    if not url or "://" not in url:
        return None
    rest = url.split("://", 1)[1]
    if "@" not in rest.split("/", 1)[0]:
        return None
    return rest.split("@", 1)[0].split(":", 1)[0]


def _containers(docs: list[dict]):
    for d in docs:
        if d.get("kind") != "Deployment":
            continue
        name = d["spec"]["selector"]["matchLabels"].get("app.kubernetes.io/name")
        if name in NAMES:
            yield name, d["spec"]["template"]["spec"], d["spec"]["template"]["spec"]["containers"][0]


def _secret_mount(spec: dict, container: dict, path: str) -> bool:
    """Whether `path` lies in a read-only mount of a Secret volume."""
    volumes = {v["name"]: v for v in spec.get("volumes", [])}
    for m in container.get("volumeMounts", []):
        mount = m["mountPath"].rstrip("/") + "/"
        if path.startswith(mount) and m.get("readOnly") and "secret" in volumes.get(m["name"], {}):
            return True
    return False


def check_helm_security(env: str, docs: list[dict]) -> list[str]:
    if env == "dev":
        return []
    problems = []
    service_dbs: set[tuple] = set()
    for name, spec, c in _containers(docs):
        where = f"helm {env}: {name}"
        env_vars = {e["name"]: e for e in c.get("env", [])}
        if "secretKeyRef" not in env_vars.get("GRODT_REDIS__URL", {}).get("valueFrom", {}):
            problems.append(f"{where}: GRODT_REDIS__URL must come from the Redis Secret "
                            "(redis.existingSecret): without it the service connects with no password")
        tokens = env_vars.get("GRODT_AUTH__TOKENS_FILE", {}).get("value")
        if not tokens or not _secret_mount(spec, c, tokens):
            problems.append(f"{where}: no gRPC tokens file (auth.existingSecret mounted read-only and "
                            "GRODT_AUTH__TOKENS_FILE): it would refuse every call")
        if env == "prod":
            for key in ("GRODT_GRPC__TLS__CERT_FILE", "GRODT_GRPC__TLS__KEY_FILE"):
                path = env_vars.get(key, {}).get("value")
                if not path or not _secret_mount(spec, c, path):
                    problems.append(f"{where}: gRPC is plaintext in prod: {key} must be a file of a "
                                    "read-only Secret mount (grpcTls.existingSecret)")
        db = env_vars.get("GRODT_DATABASE__URL", {}).get("valueFrom", {}).get("secretKeyRef")
        if db:
            service_dbs.add((db.get("name"), db.get("key")))
    if env == "prod":
        for pod in docs:
            if pod.get("kind") != "Pod" or pod["metadata"].get("annotations", {}).get("helm.sh/hook") != "test":
                continue
            for c in pod["spec"]["containers"]:
                args = c.get("args", [])
                if args[:1] == ["health"] and "--tls-ca" not in args:
                    problems.append(f"helm {env}: smoke test {c['name']} checks health without TLS (--tls-ca)")
    for job in docs:
        if job.get("kind") != "Job" or job["metadata"].get("annotations", {}).get("helm.sh/hook") is None:
            continue
        c = job["spec"]["template"]["spec"]["containers"][0]
        if c.get("args") != ["migrate"]:
            continue
        env_vars = {e["name"]: e for e in c.get("env", [])}
        ref = env_vars.get("GRODT_DATABASE__URL", {}).get("valueFrom", {}).get("secretKeyRef") or {}
        if (ref.get("name"), ref.get("key")) in service_dbs:
            problems.append(f"helm {env}: the migration Job uses the services' database Secret: it must run as "
                            "the migration role (migration.existingSecret), the services as the application role")
    return problems
