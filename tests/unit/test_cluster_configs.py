"""cluster/: the Ray launcher YAMLs against the cluster-config schema shipped inside the ray package, the
KubeRay and MLflow manifests against the fields KubeRay / Kubernetes need, and every install against the
README's pins. Nothing here reaches a cloud or a Kubernetes API; the shell snippets are parsed by bash and
the MLflow start-up script is run with a stand-in ``mlflow``."""
import configparser
import copy
import fnmatch
import functools
import hashlib
import importlib.util
import io
import json
import re
import shlex
import subprocess
import tarfile
from pathlib import Path

import jsonschema
import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
CLUSTER = ROOT / "cluster"
KUBERAY = CLUSTER / "kuberay"
LAUNCHERS = {"aws": "s3://", "gcp": "gs://"}
SECRET = "arx-mlflow"


def load(path: Path):
    return yaml.safe_load(path.read_text())


@functools.lru_cache(maxsize=None)
def manifests(name: str) -> list[dict]:
    """The documents of a KubeRay manifest (cached: read-only in these tests)."""
    return [d for d in yaml.safe_load_all((KUBERAY / name).read_text()) if d]


def one(docs: list[dict], kind: str, name: str | None = None) -> dict:
    found = [d for d in docs if d["kind"] == kind and (name is None or d["metadata"]["name"] == name)]
    assert len(found) == 1, f"expected one {kind} {name or ''}, found {len(found)}"
    return found[0]


def readme_pins() -> str:
    """``torch==X torchvision==Y`` exactly as the top-level README installs them."""
    m = re.search(r"torch==[\w.+]+ torchvision==[\w.+]+", (ROOT / "README.md").read_text())
    assert m, "README.md installs no pinned torch / torchvision"
    return m.group(0)


def bash_ok(script: str) -> None:
    r = subprocess.run(["bash", "-n", "-c", script], capture_output=True, text=True)
    assert r.returncode == 0, f"{script!r}: {r.stderr}"


def sweep_config(name: str = "pets_topgap") -> dict:
    return load(ROOT / "sweeps" / "configs" / f"{name}.yaml")


# ---- Ray cluster launcher (cluster/aws.yaml, cluster/gcp.yaml) ---------------------------------------------
@pytest.fixture(scope="module")
def ray_schema():
    import ray.autoscaler

    return json.loads((Path(ray.autoscaler.__file__).parent / "ray-schema.json").read_text())


@pytest.fixture(scope="module", params=sorted(LAUNCHERS))
def launcher(request):
    return request.param, load(CLUSTER / f"{request.param}.yaml")


def commands(cfg: dict) -> list[str]:
    keys = ("initialization_commands", "setup_commands", "head_setup_commands", "worker_setup_commands",
            "head_start_ray_commands", "worker_start_ray_commands")
    return [c for k in keys for c in cfg[k]]


def test_launcher_config_matches_rays_schema(launcher, ray_schema):
    from ray.autoscaler._private.util import prepare_config, validate_config

    _, cfg = launcher
    jsonschema.validate(cfg, ray_schema)
    validate_config(prepare_config(copy.deepcopy(cfg)))  # what `ray up` checks before it calls the cloud


def test_launcher_lists_every_command_section(launcher):
    """Sections left out are filled from Ray's defaults (e.g. a `pip install` outside arx's venv)."""
    _, cfg = launcher
    for key in ("initialization_commands", "setup_commands", "head_setup_commands", "worker_setup_commands",
                "head_start_ray_commands", "worker_start_ray_commands", "file_mounts"):
        assert key in cfg, key


def test_launcher_head_holds_the_trial_slots_and_no_cpus(launcher):
    from sweeps.raysession import TRIAL_SLOT

    _, cfg = launcher
    types = cfg["available_node_types"]
    head = types[cfg["head_node_type"]]["resources"]
    assert head.get(TRIAL_SLOT, 0) >= 1 and head.get("CPU") == 0 and not head.get("GPU")
    workers = {k: v for k, v in types.items() if k != cfg["head_node_type"]}
    assert workers and all(v["resources"].get("GPU", 0) >= 1 for v in workers.values())
    assert all(TRIAL_SLOT not in v["resources"] for v in workers.values())
    assert all(0 <= v.get("min_workers", 0) <= v["max_workers"] for v in workers.values())


def test_aws_gpu_node_types():
    cfg = load(CLUSTER / "aws.yaml")
    kinds = {v["node_config"]["InstanceType"]: v["resources"] for v in cfg["available_node_types"].values()}
    assert {"g5.xlarge": 1, "g5.12xlarge": 4, "p4d.24xlarge": 8} == {
        k: r["GPU"] for k, r in kinds.items() if r.get("GPU")}


def test_gcp_a100_node_types_declare_their_accelerators():
    cfg = load(CLUSTER / "gcp.yaml")
    for name, t in cfg["available_node_types"].items():
        nc = t["node_config"]
        if not t["resources"].get("GPU"):
            assert "guestAccelerators" not in nc, name
            continue
        assert nc["machineType"].startswith("a2-highgpu-"), name
        (acc,) = nc["guestAccelerators"]
        assert acc["acceleratorType"] == "nvidia-tesla-a100"
        assert acc["acceleratorCount"] == t["resources"]["GPU"] == int(nc["machineType"].split("-")[-1][:-1])
        assert nc["scheduling"]["onHostMaintenance"] == "TERMINATE"  # required for GPU VMs


def test_launcher_installs_arx_exactly_like_the_readme(launcher):
    _, cfg = launcher
    install = (f"python3 -m venv ~/arx-venv && ~/arx-venv/bin/pip install {readme_pins()} "
               f"&& ~/arx-venv/bin/pip install -e ~/arx")
    assert install in cfg["setup_commands"]
    assert cfg["file_mounts"]["~/arx"] == "."
    assert not any("torch" in c for c in commands(cfg) if c != install), "torch installed outside the pin"


def test_launcher_env_reaches_workers(launcher):
    """Storage path, Optuna study and MLflow URI on the head; MLflow URI (the head's server) on workers."""
    provider, cfg = launcher
    head, workers = " ".join(cfg["head_setup_commands"]), " ".join(cfg["worker_setup_commands"])
    assert f"ARX_STORAGE_PATH={LAUNCHERS[provider]}" in head
    # the driver named: SQLAlchemy 2.1 reads a bare postgresql:// as psycopg 3, which the recipe does not install
    assert "ARX_OPTUNA_STORAGE=postgresql+psycopg2://" in head and "MLFLOW_TRACKING_URI=http://" in head
    assert "MLFLOW_TRACKING_URI=http://$RAY_HEAD_IP:5000" in workers
    assert f"--artifacts-destination {LAUNCHERS[provider]}" in head and "--backend-store-uri postgresql+psycopg2://" in head
    for c in cfg["head_start_ray_commands"] + cfg["worker_start_ray_commands"]:
        assert "ray start" not in c or ". ~/.arx_env" in c.split("ray start")[0], c
    assert cfg["file_mounts"]["~/.ray/auth_token"] == "~/.ray/auth_token"
    assert "RAY_AUTH_MODE=token" in head and "RAY_AUTH_MODE=token" in workers


def test_launcher_commands_are_valid_shell(launcher):
    for c in commands(launcher[1]):
        bash_ok(c)


def test_launcher_fetches_the_dataset_where_the_sweep_reads_it(launcher):
    root = sweep_config()["base"]["dataset"]["root"]
    assert any("cluster/fetch_pets.py" in c and c.rstrip().endswith(root) for c in launcher[1]["worker_setup_commands"])


# ---- KubeRay (cluster/kuberay/raycluster.yaml, rayjob.yaml) -------------------------------------------------
@pytest.fixture(scope="module")
def raycluster():
    return one(manifests("raycluster.yaml"), "RayCluster")


@pytest.fixture(scope="module")
def rayjob():
    return one(manifests("rayjob.yaml"), "RayJob")


def pod_spec(group: dict) -> dict:
    return group["template"]["spec"]


def ray_container(group: dict) -> dict:
    c = pod_spec(group)["containers"][0]
    assert c["image"] and c["resources"]["limits"] and c["resources"]["requests"], c["name"]
    return c


def test_raycluster_has_the_fields_kuberay_requires(raycluster):
    assert raycluster["apiVersion"] == "ray.io/v1" and raycluster["metadata"]["name"]
    spec = raycluster["spec"]
    assert spec["rayVersion"] and spec["enableInTreeAutoscaling"] is True
    assert spec["authOptions"]["mode"] == "token"
    head = spec["headGroupSpec"]
    assert all(isinstance(v, str) for v in head["rayStartParams"].values())
    c = ray_container(head)
    assert "nvidia.com/gpu" not in c["resources"]["limits"]
    assert {p["containerPort"] for p in c["ports"]} >= {6379, 8265, 10001}
    assert spec["workerGroupSpecs"]
    for g in spec["workerGroupSpecs"]:
        assert g["groupName"] and isinstance(g["rayStartParams"], dict)
        assert all(isinstance(v, str) for v in g["rayStartParams"].values())
        assert 0 <= g["minReplicas"] <= g["replicas"] <= g["maxReplicas"] and g["maxReplicas"] >= 1
        w = ray_container(g)
        assert w["image"] == c["image"]
        gpus = w["resources"]["limits"]["nvidia.com/gpu"]
        assert int(gpus) >= 1 and w["resources"]["requests"].get("nvidia.com/gpu", gpus) == gpus


def test_raycluster_head_holds_the_trial_slots(raycluster):
    from sweeps.raysession import TRIAL_SLOT

    params = raycluster["spec"]["headGroupSpec"]["rayStartParams"]
    assert params["num-cpus"] == "0"
    # KubeRay passes the value through a shell: '"{\"trial_slot\": 16}"' -> {"trial_slot": 16}
    (value,) = shlex.split(params["resources"])
    assert json.loads(value)[TRIAL_SLOT] >= 1
    for g in raycluster["spec"]["workerGroupSpecs"]:
        assert TRIAL_SLOT not in g["rayStartParams"].get("resources", "")


def test_rayjob_runs_the_sweep_on_the_same_cluster_spec(rayjob, raycluster):
    assert rayjob["apiVersion"] == "ray.io/v1"
    spec = rayjob["spec"]
    assert spec["rayClusterSpec"] == raycluster["spec"], "rayjob.yaml and raycluster.yaml drifted apart"
    entry = spec["entrypoint"]
    assert "arx sweep sweeps/configs/pets_topgap.yaml" in entry
    assert (ROOT / "sweeps" / "configs" / "pets_topgap.yaml").is_file()
    assert "storage_path=${ARX_STORAGE_PATH" in entry and "optuna_storage=${ARX_OPTUNA_STORAGE" in entry
    bash_ok(entry)
    assert spec["shutdownAfterJobFinishes"] is True


def env_of(container: dict) -> dict:
    return {e["name"]: e.get("value", e.get("valueFrom")) for e in container.get("env", [])}


def test_ray_pods_reach_mlflow_and_the_shared_storage(raycluster):
    svc = one(manifests("mlflow.yaml"), "Service", "mlflow")
    url = f"http://{svc['metadata']['name']}:{svc['spec']['ports'][0]['port']}"
    head = env_of(ray_container(raycluster["spec"]["headGroupSpec"]))
    assert head["ARX_STORAGE_PATH"].startswith(("s3://", "gs://"))
    assert head["ARX_OPTUNA_STORAGE"]["secretKeyRef"]["name"] == SECRET
    for g in [raycluster["spec"]["headGroupSpec"], *raycluster["spec"]["workerGroupSpecs"]]:
        env = env_of(ray_container(g))
        assert env["MLFLOW_TRACKING_URI"] == url
        for k in ("MLFLOW_TRACKING_USERNAME", "MLFLOW_TRACKING_PASSWORD"):
            assert env[k]["secretKeyRef"]["name"] == SECRET, k
        assert pod_spec(g)["serviceAccountName"] == one(manifests("mlflow.yaml"), "ServiceAccount")["metadata"]["name"]


def test_gpu_workers_fetch_the_dataset_where_the_sweep_reads_it(raycluster):
    root = sweep_config()["base"]["dataset"]["root"]
    for g in raycluster["spec"]["workerGroupSpecs"]:
        (init,) = pod_spec(g)["initContainers"]
        assert init["command"][-2:] == ["/home/ray/arx/cluster/fetch_pets.py", root]
        mounts = {m["mountPath"] for m in ray_container(g)["volumeMounts"]}
        assert any(root.startswith(m + "/") for m in mounts) and "/dev/shm" in mounts


# ---- MLflow tracking server (cluster/kuberay/mlflow.yaml) ---------------------------------------------------
@pytest.fixture(scope="module")
def mlflow_docs():
    return manifests("mlflow.yaml")


def mlflow_container(docs) -> dict:
    return one(docs, "Deployment", "mlflow")["spec"]["template"]["spec"]["containers"][0]


def test_mlflow_is_reachable_only_inside_the_cluster(mlflow_docs):
    assert not [d for d in mlflow_docs if d["kind"] in ("Ingress", "Route", "Gateway")]
    for svc in [d for d in mlflow_docs if d["kind"] == "Service"]:
        assert svc["spec"].get("type", "ClusterIP") == "ClusterIP", svc["metadata"]["name"]
        assert "externalIPs" not in svc["spec"]
    for kind, name in (("Deployment", "mlflow"), ("StatefulSet", "postgres")):
        workload, svc = one(mlflow_docs, kind, name), one(mlflow_docs, "Service", name)
        labels = workload["spec"]["template"]["metadata"]["labels"]
        assert svc["spec"]["selector"].items() <= labels.items()
        assert workload["spec"]["selector"]["matchLabels"].items() <= labels.items()
        ports = {p["name"] for c in workload["spec"]["template"]["spec"]["containers"] for p in c["ports"]}
        assert {p["targetPort"] for p in svc["spec"]["ports"]} <= ports
    policies = {p["metadata"]["name"] for p in mlflow_docs if p["kind"] == "NetworkPolicy"}
    assert policies >= {"mlflow", "postgres"}


def test_mlflow_runs_basic_auth_on_postgres_with_object_store_artifacts(mlflow_docs):
    c = mlflow_container(mlflow_docs)
    script = " ".join(c["args"])
    assert "--app-name basic-auth" in script and re.search(r"--artifacts-destination (s3|gs)://", script)
    env = env_of(c)
    for k in ("MLFLOW_BACKEND_STORE_URI", "MLFLOW_AUTH_DB_URI", "MLFLOW_AUTH_ADMIN_USERNAME",
              "MLFLOW_AUTH_ADMIN_PASSWORD", "MLFLOW_FLASK_SERVER_SECRET_KEY"):
        assert env[k]["secretKeyRef"]["name"] == SECRET, k
    pg = one(mlflow_docs, "StatefulSet", "postgres")
    assert pg["spec"]["volumeClaimTemplates"]
    assert env_of(pg["spec"]["template"]["spec"]["containers"][0])["POSTGRES_PASSWORD"]["secretKeyRef"]["name"] == SECRET
    init = one(mlflow_docs, "ConfigMap", "postgres-init")["data"]
    dbs = set(re.findall(r"CREATE DATABASE (\w+)", "".join(init.values())))
    assert dbs >= {"mlflow_auth", "optuna"}


def secret_keys_used() -> set[str]:
    found = set()

    def walk(node):
        if isinstance(node, dict):
            ref = node.get("secretKeyRef")
            if ref and ref["name"] == SECRET:
                found.add(ref["key"])
            for v in node.values():
                walk(v)
        elif isinstance(node, list):
            for v in node:
                walk(v)

    for name in ("mlflow.yaml", "raycluster.yaml", "rayjob.yaml"):
        walk(manifests(name))
    return found


def secret_keys_created(text: str) -> set[str]:
    """The keys of the `kubectl create secret generic arx-mlflow ... \\` command (continuation lines)."""
    lines = text.splitlines()
    start = next((i for i, l in enumerate(lines) if f"create secret generic {SECRET}" in l), None)
    assert start is not None, f"no `kubectl create secret generic {SECRET}` command"
    keys, i = set(), start
    while lines[i].rstrip().endswith("\\"):
        i += 1
        keys |= set(re.findall(r"--from-literal=([\w-]+)=", lines[i]))
    return keys


def test_every_secret_key_used_is_created_by_the_readme():
    used = secret_keys_used()
    assert used and used == secret_keys_created((CLUSTER / "README.md").read_text())
    assert used == secret_keys_created((KUBERAY / "mlflow.yaml").read_text())


def allowed_host(patterns: list[str], host: str) -> bool:
    """MLflow's Host-header rule (mlflow/server/security_utils.py): fnmatch where a pattern has a `*`."""
    return any(fnmatch.fnmatch(host, p) if "*" in p else host == p for p in patterns)


def test_mlflow_startup_script_writes_a_valid_auth_config(mlflow_docs, tmp_path):
    """Run the container's script with a stand-in `mlflow`; read its auth config the way MLflow does
    (configparser, section [mlflow]); check the Host allow-list admits the in-cluster names only."""
    c = mlflow_container(mlflow_docs)
    fake = tmp_path / "bin" / "mlflow"
    fake.parent.mkdir()
    fake.write_text('#!/bin/sh\nprintf "%s\\n" "$@" > "$ARGS_OUT"\n')
    fake.chmod(0o755)
    ini, out = tmp_path / "basic_auth.ini", tmp_path / "args"
    env = {"PATH": f"{fake.parent}:/usr/bin:/bin", "ARGS_OUT": str(out), "MLFLOW_AUTH_CONFIG_PATH": str(ini),
           "MLFLOW_AUTH_DB_URI": "postgresql://arx:0123abcd@postgres:5432/mlflow_auth"}
    r = subprocess.run([*c["command"], *c["args"]], env=env, capture_output=True, text=True, timeout=30)
    assert r.returncode == 0, r.stderr
    argv = out.read_text().split("\n")
    assert argv[:3] == ["server", "--app-name", "basic-auth"]
    assert env_of(c)["MLFLOW_AUTH_CONFIG_PATH"].startswith("/tmp/")  # writable for the non-root user
    auth = configparser.ConfigParser()
    auth.read(ini)
    assert auth["mlflow"]["database_uri"] == env["MLFLOW_AUTH_DB_URI"]
    assert auth["mlflow"]["default_permission"] in {"READ", "EDIT", "MANAGE", "NO_PERMISSIONS"}
    assert auth["mlflow"]["authorization_function"] == "mlflow.server.auth:authenticate_request_basic_auth"
    hosts = argv[argv.index("--allowed-hosts") + 1].split(",")
    for ok in ("mlflow:5000", "mlflow.arx.svc.cluster.local:5000", "localhost:5000", "127.0.0.1:5000"):
        assert allowed_host(hosts, ok), ok
    for bad in ("evil.example.com", "mlflow.evil.example.com:5000", "10.0.0.7:5000"):
        assert not allowed_host(hosts, bad), bad


# ---- the image (cluster/Dockerfile) -------------------------------------------------------------------------
def test_dockerfile_installs_arx_with_the_readme_pins_and_the_cluster_ray():
    from packaging.requirements import Requirement

    text = (CLUSTER / "Dockerfile").read_text()
    stages = re.findall(r"^FROM \S+ AS (\S+)$", text, re.M)
    assert stages[-1] == "arx" and "mlflow-server" in stages  # default target = the Ray image
    assert f"pip install --no-cache-dir {readme_pins()}" in text
    assert "pip install --no-cache-dir -e ~/arx" in text and "WORKDIR /home/ray/arx" in text
    for stage in text.split("\nFROM ")[1:]:
        assert "psycopg2-binary" in stage, stage.split()[0]  # Postgres: MLflow's backend, the Optuna study
    assert '"mlflow[auth]' in text
    for run in re.findall(r"^RUN (.*?)(?<!\\)$", text, re.M | re.S):
        bash_ok(run.replace("\\\n", " "))
    (ray_pin,) = set(re.findall(r'"ray\[default\]==([\d.]+)"', text))
    pyproject = (ROOT / "pyproject.toml").read_text()
    ray_req = Requirement(re.search(r'"(ray\[[^"]+)"', pyproject).group(1))
    assert ray_req.specifier.contains(ray_pin)
    assert load(KUBERAY / "raycluster.yaml")["spec"]["rayVersion"] == ray_pin
    for provider in LAUNCHERS:
        assert f'"ray[default]=={ray_pin}"' in " ".join(load(CLUSTER / f"{provider}.yaml")["setup_commands"])


# ---- the dataset fetcher (cluster/fetch_pets.py) ------------------------------------------------------------
def _tarball(path: Path, files: dict[str, bytes]) -> str:
    with tarfile.open(path, "w:gz") as tar:
        for name, data in files.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return hashlib.md5(path.read_bytes()).hexdigest()


def test_fetch_pets_lays_out_the_dataset_once(tmp_path):
    spec = importlib.util.spec_from_file_location("fetch_pets", CLUSTER / "fetch_pets.py")
    fp = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(fp)
    src = tmp_path / "src"
    src.mkdir()
    archives = {
        "images.tar.gz": (_tarball(src / "images.tar.gz", {"images/Abyssinian_1.jpg": b"jpg"}), "images"),
        "annotations.tar.gz": (_tarball(src / "annotations.tar.gz", {
            "annotations/list.txt": b"Abyssinian_1 1 1 1\n", "annotations/trainval.txt": b"Abyssinian_1 1 1 1\n",
            "annotations/test.txt": b"", "annotations/xmls/Abyssinian_1.xml": b"<annotation/>"}), "annotations"),
    }
    dest = tmp_path / "data" / "oxford-iiit-pet"
    fp.fetch(dest, src.as_uri(), archives)
    assert (dest / "images" / "Abyssinian_1.jpg").read_bytes() == b"jpg"
    assert (dest / "annotations" / "list.txt").exists() and (dest / "annotations" / "xmls").is_dir()
    assert sorted(p.name for p in dest.iterdir()) == ["annotations", "images"]  # no leftovers
    for f in src.iterdir():
        f.unlink()
    fp.fetch(dest, src.as_uri(), archives)  # complete: nothing fetched
    bad = {"images.tar.gz": ("0" * 32, "images")}
    _tarball(src / "images.tar.gz", {"images/x.jpg": b"x"})
    with pytest.raises(SystemExit, match="md5"):
        fp.fetch(tmp_path / "other", src.as_uri(), bad)
    assert not (tmp_path / "other" / "images").exists()


# ---- the recipe (cluster/README.md) -------------------------------------------------------------------------
def test_readme_goes_from_zero_to_report():
    text = (CLUSTER / "README.md").read_text()
    for step in ("ray up", "kubectl -n arx apply -f cluster/kuberay/mlflow.yaml", "ray job submit",
                 "arx sweep sweeps/configs/pets_topgap.yaml", "kubectl -n arx port-forward svc/mlflow",
                 "ray dashboard", "arx report pets_topgap", "trial_slot", "Fractional GPUs", readme_pins()):
        assert step in text, step
    blocks = re.findall(r"```bash\n(.*?)```", text, re.S)
    assert blocks
    for block in blocks:
        bash_ok(block)
    for name in ("aws.yaml", "gcp.yaml", "Dockerfile", "fetch_pets.py", "kuberay/mlflow.yaml",
                 "kuberay/raycluster.yaml", "kuberay/rayjob.yaml"):
        assert f"`{name}`" in text, name
        assert (CLUSTER / name).is_file(), name


def test_no_credentials_in_the_recipes():
    for path in [*CLUSTER.glob("*.yaml"), *KUBERAY.glob("*.yaml"), CLUSTER / "README.md"]:
        text = path.read_text()
        assert not re.search(r"postgresql(\+\w+)?://[^:@/\s]+:[^$@\s]+@", text.replace("$PGPASS", "")), path
        assert "kind: Secret" not in text, path
        assert "AKIA" not in text, path
