"""The deployment files: docker-compose runs what the repository has, and production settings are safe."""

import json
import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parent.parent


def compose(env: dict[str, str] | None = None) -> dict:
    """docker-compose.yml as compose reads it with `env` as its .env (each ${NAME:-default})."""
    text = (ROOT / "docker-compose.yml").read_text()
    return yaml.safe_load(re.sub(r"\$\{(\w+):-([^}]*)\}", lambda m: (env or {}).get(m[1]) or m[2], text))


def test_compose_has_web_worker_redis_and_postgres_with_healthchecks():
    services = compose()["services"]

    assert set(services) == {"web", "worker", "beat", "trainer", "redis", "postgres"}
    assert all("healthcheck" in service for service in services.values())
    assert all(service["restart"] == "unless-stopped" for service in services.values())  # after a crash
    for name in ("web", "worker", "beat", "trainer"):
        assert services[name]["build"] == "."
        assert services[name]["environment"]["DATABASE_URL"].startswith("postgres://")
        assert services[name]["environment"]["CELERY_BROKER_URL"].startswith("redis://redis:")
        assert {"media:/app/var/media", "models:/app/var/models"} <= set(services[name]["volumes"])
        # (the volume is not where the image has the shipped models: it would hide them)
        assert services[name]["environment"]["CAKESITE_MODELS_DIR"] == "/app/var/models"


def test_the_application_containers_have_memory_limits_that_dot_env_raises_and_the_data_stores_none():
    """A process gone wrong (a trainer on a huge data set) is killed and started again, instead of
    taking the host's memory and PostgreSQL with it."""
    limits = {name: service.get("mem_limit") for name, service in compose()["services"].items()}
    raised = {name: service.get("mem_limit") for name, service in compose(
        {"WEB_MEMORY": "6g", "WORKER_MEMORY": "3g", "TRAINER_MEMORY": "16g"})["services"].items()}

    assert limits == {"web": "4g", "worker": "2g", "beat": "512m", "trainer": "8g", "redis": None,
                      "postgres": None}
    assert (raised["web"], raised["worker"], raised["trainer"]) == ("6g", "3g", "16g")


def test_the_commands_compose_runs_exist_in_the_repository():
    services = compose()["services"]
    web, worker, beat, trainer = (services[name]["command"] for name in ("web", "worker", "beat", "trainer"))

    assert "gunicorn cakesite.wsgi:application" in web
    assert web.index("manage.py install_models") < web.index("manage.py migrate")  # migrate registers them
    assert "PGOPTIONS='-c lock_timeout=5s' python manage.py migrate" in web  # (no endless wait for a lock)
    assert worker.startswith("celery -A cakesite worker") and worker.endswith("-Q celery,celery.email")
    assert trainer.startswith("celery -A cakesite worker") and "-Q celery.training " in trainer
    assert beat.startswith("celery -A cakesite beat") and all("--beat" not in c for c in (worker, trainer))
    assert (ROOT / "manage.py").is_file() and (ROOT / "Dockerfile").is_file()
    assert "COPY requirements.txt" in (ROOT / "Dockerfile").read_text()
    code = "import cakesite.wsgi, cakesite.celery; print(cakesite.wsgi.application, cakesite.celery.app.main)"
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True,
                         env={**os.environ, "DJANGO_SETTINGS_MODULE": "cakesite.settings"}, check=True)
    assert "WSGIHandler" in out.stdout and "cakesite" in out.stdout
    assert "gunicorn" in (ROOT / "requirements.txt").read_text()


def test_settings_given_in_dot_env_reach_every_service_and_the_workers_read_the_queues_the_web_sends_to():
    """compose's `environment` overrides `env_file`: a value written there alone would ignore .env."""
    env = {"DATABASE_URL": "postgres://db.example.org/cakes", "CELERY_QUEUE": "kue"}
    services = compose(env)["services"]

    for name in ("web", "worker", "trainer"):
        assert services[name]["environment"]["DATABASE_URL"] == "postgres://db.example.org/cakes"
        assert "CELERY_QUEUE" not in services[name]["environment"]  # from env_file, as written
    assert services["worker"]["command"].endswith("-Q kue,kue.email")
    assert "-Q kue.training " in services["trainer"]["command"]


def test_sites_sharing_one_redis_send_e_mails_and_runs_to_queues_of_their_own():
    """Another site's worker would look the e-mail's or the run's id up in its own database."""
    code = ("import json; from cakesite.celery import app; router = app.amqp.router; print(json.dumps("
            "[router.route({}, f'classifier.tasks.{t}')['queue'].name for t in "
            "('classify_photo', 'send_email_confirmation', 'send_password_reset', 'train_model')]))")
    env = {**os.environ, "DJANGO_SETTINGS_MODULE": "cakesite.settings", "CELERY_QUEUE": "kue"}
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True,
                         check=True)

    assert json.loads(out.stdout.splitlines()[-1]) == ["kue", "kue.email", "kue.email", "kue.training"]


def test_secrets_and_retrained_versions_stay_out_of_the_image():
    ignored = (ROOT / ".dockerignore").read_text().split()

    assert {".env", ".env.*", "models/*+run*/"} <= set(ignored)


def test_the_image_hands_its_volume_folders_to_the_user_that_writes_them():
    """A named volume starts as a copy of the image's folder, owner included, and a folder the image
    lacks is created for root: the site (uploads) and the trainer (new versions) run as `cakesite`."""
    dockerfile = (ROOT / "Dockerfile").read_text().replace("\\\n", " ")
    run = next(line for line in dockerfile.splitlines() if "chown" in line)
    made = {w for w in run.split() if w.startswith("/app/")}
    targets = {v.split(":")[1] for name in ("web", "worker", "trainer")
               for v in compose()["services"][name]["volumes"]}

    created = run.split("mkdir -p ")[1].split("&&")[0].split()
    assert "USER cakesite" in dockerfile and "chown -R cakesite" in run
    for target in targets:  # /app/var/media, /app/var/models
        assert any(target == d or target.startswith(d + "/") for d in made), (target, run)
        shipped = target.removeprefix("/app/")  # a folder of the repository that COPY brings
        shipped = (ROOT / shipped).is_dir() and subprocess.run(["git", "check-ignore", "-q", shipped],
                                                               cwd=ROOT).returncode == 1
        assert target in created or shipped, target


@pytest.mark.parametrize("redirect, mail, cache", [
    ("1", "smtp.example.org", "redis://127.0.0.1:6379/1"),
    ("0", "smtp.example.org", "redis://127.0.0.1:6379/1"),  # 0: the proxy redirects (compose)
    ("0", "", "redis://127.0.0.1:6379/1"),
    ("0", "smtp.example.org", ""),
])
def test_production_settings_pass_the_deployment_checklist(tmp_path, redirect, mail, cache):
    env = {**os.environ, "DEBUG": "0", "SECRET_KEY": "x" * 50 + "-production-secret-for-the-check",
           "ALLOWED_HOSTS": "cakes.example.org", "CAKESITE_VAR_DIR": str(tmp_path),
           "SECURE_SSL_REDIRECT": redirect, "EMAIL_HOST": mail, "CACHE_URL": cache}

    result = subprocess.run([sys.executable, "manage.py", "check", "--deploy", "--fail-level", "WARNING"],
                            cwd=ROOT, env=env, capture_output=True, text=True)

    if mail and cache:
        assert result.returncode == 0, result.stdout + result.stderr
        assert "no issues" in result.stdout
    elif not mail:  # password reset links would go to the log, never to the user
        assert result.returncode == 1 and "?: (classifier.W001) EMAIL_HOST is not set" in result.stderr
        assert result.stderr.count("?: (") == 1, result.stderr  # the only issue
    else:  # three gunicorn processes would each allow the whole rate
        assert result.returncode == 1 and "?: (classifier.W002) CACHE_URL is not set" in result.stderr
        assert result.stderr.count("?: (") == 1, result.stderr


@pytest.mark.django_db
def test_every_model_change_has_its_migration():
    """A field added or changed without a migration works in the tests' database yet breaks
    every deployed one."""
    from django.core.management import call_command

    call_command("makemigrations", "--check", "--dry-run", verbosity=0)  # (exits 1 when one is missing)


def test_production_refuses_to_start_without_a_secret_key(tmp_path):
    env = {k: v for k, v in os.environ.items() if k != "SECRET_KEY"}
    env.update(DEBUG="0", CAKESITE_VAR_DIR=str(tmp_path))

    result = subprocess.run([sys.executable, "manage.py", "check"], cwd=ROOT, env=env,
                            capture_output=True, text=True)

    assert result.returncode != 0
    assert "SECRET_KEY must be set" in result.stderr


PRODUCTION = {"DEBUG": "0", "SECRET_KEY": "x" * 50 + "-production-secret-for-the-check",
              "ALLOWED_HOSTS": "cakes.example.org", "SECURE_SSL_REDIRECT": "1"}


@pytest.fixture(scope="module")
def production_dir(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("production")


@pytest.fixture(scope="module")
def production_site(production_dir):
    """The site as compose runs it (gunicorn with its access log, production settings, on SQLite
    here): its port. One for the module's tests: each asks without changing it."""
    from tests.processes import Process, answers, free_port, wait_for

    tmp_path = production_dir
    env = {**os.environ, **PRODUCTION, "CAKESITE_VAR_DIR": str(tmp_path),
           "DATABASE_URL": f"sqlite:///{tmp_path / 'db.sqlite3'}"}
    for command in (["migrate"], ["collectstatic"]):
        subprocess.run([sys.executable, "manage.py", *command, "--noinput", "-v", "0"], cwd=ROOT, env=env,
                       check=True)
    web_command = shlex.split(compose()["services"]["web"]["command"])[2]  # (sh -c "...")
    options = shlex.split(web_command.split("exec gunicorn cakesite.wsgi:application")[1])
    assert options[options.index("--access-logfile") + 1] == "-"  # (written to a file here, to read it)
    port = free_port()
    web = Process([sys.executable, "-m", "gunicorn", "cakesite.wsgi", "-b", f"127.0.0.1:{port}",
                   "--access-logfile", str(tmp_path / "access.log"),
                   "--logger-class", options[options.index("--logger-class") + 1]], env,
                  tmp_path / "web.log")
    try:
        assert wait_for(lambda: answers(port), 60), web.tail()
        yield port
    finally:
        web.stop()


def test_the_web_healthcheck_passes_on_the_production_site_compose_runs(production_site):
    """Behind its proxy the site serves only its own host names, over https: the check asks as the
    proxy does (a plain request to localhost gets a 400, or a redirect to https)."""
    check = compose()["services"]["web"]["healthcheck"]["test"]
    assert check[:3] == ["CMD", "python", "-c"]
    code = check[3].replace("localhost:8000", f"localhost:{production_site}")

    result = subprocess.run([sys.executable, "-c", code], env={**os.environ, **PRODUCTION},
                            capture_output=True, text=True)

    assert result.returncode == 0, result.stderr


@pytest.mark.parametrize("method, path, content_type, status", [
    ("POST", "/api/auth/token/", "multipart/form-data; boundary*=xyz''%41", 415),  # the API's error body
    ("POST", "/api/auth/token/", "application/json; charset*=nope''%41", 415),
    ("POST", "/accounts/login/", "multipart/form-data; boundary*=xyz''%41", 403),  # the site's CSRF page
    ("GET", "/", "text/plain; x*=xyz''%41", 200),
])
def test_a_content_type_whose_parameters_cannot_be_decoded_gets_the_sites_answer(
        production_site, method, path, content_type, status):
    """An RFC 2231 parameter in an unknown charset made Django raise while it made the request,
    before any middleware: the server's bare 500, for any URL, signed in or not."""
    import http.client

    connection = http.client.HTTPConnection("127.0.0.1", production_site, timeout=30)
    connection.request(method, path, body=b"x", headers={
        "Host": "cakes.example.org", "X-Forwarded-Proto": "https", "Content-Type": content_type})
    response = connection.getresponse()

    assert response.status == status, response.read()[:300]


def test_the_access_log_keeps_no_token_of_a_password_reset_or_an_address_confirmation_link(
        production_site, production_dir):
    """Anyone who read a reset link's token in the log before its owner used it could choose the
    account's password. The links are real ones, as the e-mails give them; the Referer is what a
    page's stylesheet is fetched with."""
    import http.client

    from django.contrib.auth.models import User
    from django.contrib.auth.tokens import default_token_generator
    from django.urls import reverse
    from django.utils.encoding import force_bytes
    from django.utils.http import urlsafe_base64_encode

    from classifier import selectors
    from classifier.models import PendingEmail
    from tests.processes import wait_for

    user = User(pk=41, username="ayu", password="!")
    uid = urlsafe_base64_encode(force_bytes(user.pk))
    reset_token = default_token_generator.make_token(user)
    confirm_token = selectors.email_confirmation_token(PendingEmail(pk=7, user=user, email="ayu@example.org"))
    reset = reverse("password_reset_confirm", args=[uid, reset_token])
    confirm = reverse("email-confirm", args=[confirm_token])
    for path, referer in [(reset, ""), (f"{confirm}?x=1", ""), ("/static/css/site.css", confirm),
                          ("/accounts/reset/done/", "")]:
        connection = http.client.HTTPConnection("127.0.0.1", production_site, timeout=30)
        connection.request("GET", path, headers={"Host": "cakes.example.org", "X-Forwarded-Proto": "https",
                                                 "Referer": f"https://cakes.example.org{referer}"})
        connection.getresponse().read()

    def log() -> str:
        return (production_dir / "access.log").read_text()

    assert wait_for(lambda: "GET /accounts/reset/done/ HTTP/1.1" in log(), 10)  # (written after answering)
    assert reset_token not in log() and confirm_token not in log()
    assert f"GET /accounts/reset/{uid}/[token]/ HTTP/1.1" in log()
    assert 'GET /accounts/email/[token]/?x=1 HTTP/1.1' in log()
    assert '"https://cakes.example.org/accounts/email/[token]/"' in log()  # the stylesheet's Referer


def test_a_line_django_logs_is_written_once_in_development(settings):
    """Django's own console handler (in DEBUG) and the site's, on the root logger, each wrote it:
    the handlers a record of django.request passes through, as logging walks them."""
    import logging

    settings.DEBUG = True
    record = logging.LogRecord("django.request", logging.WARNING, __file__, 0, "Not Found: /x/", None, None)
    writing, logger = [], logging.getLogger("django.request")
    while logger:
        writing += [h for h in logger.handlers if record.levelno >= h.level and h.filter(record)
                    and not type(h).__module__.startswith("_pytest")]  # (pytest's own capture)
        logger = logger.parent if logger.propagate else None

    assert len(writing) == 1


def test_production_refuses_to_start_without_allowed_hosts(tmp_path):
    env = {k: v for k, v in os.environ.items() if k != "ALLOWED_HOSTS"}
    env.update(DEBUG="0", SECRET_KEY="x" * 50, CAKESITE_VAR_DIR=str(tmp_path))

    result = subprocess.run([sys.executable, "manage.py", "check"], cwd=ROOT, env=env,
                            capture_output=True, text=True)

    assert result.returncode != 0
    assert "ALLOWED_HOSTS must be set" in result.stderr


@pytest.mark.parametrize("setting, value, error", [
    ("CELERY_TASK_TIME_LIMIT", 600, "classifier.E001"),
    ("TRAINING_TIME_LIMIT_S", 120, "classifier.E002"),
    ("TRAINING_TIME_LIMIT_S", 4 * 3600, "classifier.E003"),
    ("CLASSIFY_MAX_STARTS", 4, "classifier.E004"),
])
def test_time_limits_that_do_not_fit_together_stop_the_site_from_starting(settings, setting, value, error):
    from django.core.checks import run_checks

    settings.CELERY_BROKER_TRANSPORT_OPTIONS = {"visibility_timeout": 3 * 3600}  # Redis's
    assert [e.id for e in run_checks() if e.id.startswith("classifier.")] == []

    setattr(settings, setting, value)

    assert [e.id for e in run_checks() if e.id.startswith("classifier.")] == [error]


def test_a_worker_refuses_to_start_on_time_limits_that_do_not_fit(settings):
    from cakesite.celery import refuse_time_limits_that_do_not_fit

    refuse_time_limits_that_do_not_fit()  # the defaults fit
    settings.CELERY_TASK_TIME_LIMIT = 600

    with pytest.raises(SystemExit, match="must be below REQUEUE_AFTER_S"):
        refuse_time_limits_that_do_not_fit()


def test_constraints_hold_the_versions_the_requirements_pin():
    """The image and `make install` take every transitive version from constraints.txt: a pin changed
    in requirements*.txt without regenerating it would fail the install (a conflict), so say it here."""
    from packaging.requirements import Requirement
    from packaging.utils import canonicalize_name

    def pins(name):
        lines = (ROOT / name).read_text().splitlines()
        reqs = [Requirement(line.split(" #")[0]) for line in lines if line.strip() and line[0] not in "#-"]
        # (as on the machine constraints.txt was frozen on, x86_64: tensorflow-cpu, not tensorflow)
        here = [r for r in reqs if r.marker is None or r.marker.evaluate({"platform_machine": "x86_64"})]
        return {canonicalize_name(r.name): str(r.specifier) for r in here}

    constraints = pins("constraints.txt")
    for name, specifier in {**pins("requirements.txt"), **pins("requirements-dev.txt")}.items():
        assert constraints.get(name) == specifier, (name, specifier, constraints.get(name))
