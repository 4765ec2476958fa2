"""The client-library compatibility scenario, through docker-py (PyPI `docker`).

Run by crates/berthd/tests/client_libraries.rs against berthd over its unix
socket or over TCP with mutual TLS. Every step runs even when an earlier one
failed (as far as it can), prints `ok STEP` or `FAIL STEP: why`, and the exit
status is non-zero if any step failed.

usage: docker_py_scenario.py --host URL --image-tar PATH --image REF
                             [--tls-ca CA --tls-cert CERT --tls-key KEY]
"""

import argparse
import sys
import time
import traceback

import docker
from docker.tls import TLSConfig

failures = []


def step(name, fn):
    try:
        fn()
        print(f"ok {name}", flush=True)
    except Exception as e:  # noqa: BLE001 -- report every failure, keep going
        failures.append(name)
        print(f"FAIL {name}: {type(e).__name__}: {e}", flush=True)
        traceback.print_exc(file=sys.stdout)


def check(cond, what):
    if not cond:
        raise AssertionError(what)


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--host", required=True)
    p.add_argument("--image-tar", required=True)
    p.add_argument("--image", required=True)
    p.add_argument("--tls-ca")
    p.add_argument("--tls-cert")
    p.add_argument("--tls-key")
    a = p.parse_args()

    tls = None
    if a.tls_ca:
        tls = TLSConfig(client_cert=(a.tls_cert, a.tls_key), ca_cert=a.tls_ca, verify=True)
    client = docker.DockerClient(base_url=a.host, tls=tls, timeout=120)
    api = client.api
    state = {}
    t0 = int(time.time()) - 1

    step("ping", lambda: check(client.ping() is True, "ping is not OK"))

    def version():
        v = client.version()
        check(v.get("ApiVersion"), f"no ApiVersion in {v}")
        check(v.get("Os") == "linux", f"Os {v.get('Os')}")

    step("version", version)

    def info():
        i = client.info()
        check(i.get("Driver"), f"no Driver in info")
        check(i.get("OSType") == "linux", f"OSType {i.get('OSType')}")

    step("info", info)

    def load():
        with open(a.image_tar, "rb") as f:
            images = client.images.load(f.read())
        tags = [t for img in images for t in img.tags]
        check(a.image in tags, f"loaded {tags}")

    step("image load", load)

    def images_list_inspect():
        listed = [t for img in client.images.list() for t in img.tags]
        check(a.image in listed, f"image list {listed}")
        img = client.images.get(a.image)
        check(img.id.startswith("sha256:"), f"image id {img.id}")
        check(img.attrs["Config"]["Cmd"] == ["sh"], f"Cmd {img.attrs['Config']['Cmd']}")
        state["image_id"] = img.id

    step("images list and inspect", images_list_inspect)

    def volumes():
        v = client.volumes.create(name="compat-vol", labels={"suite": "docker-py"})
        check(v.name == "compat-vol", v.name)
        check("compat-vol" in [x.name for x in client.volumes.list()], "volume not listed")
        check(client.volumes.get("compat-vol").attrs["Labels"] == {"suite": "docker-py"}, "labels")

    step("volume create, list, inspect", volumes)

    def run_to_completion():
        c = client.containers.create(
            a.image,
            ["sh", "-c", "echo hello from docker-py; echo to stderr >&2; echo kept > /v/f"],
            volumes={"compat-vol": {"bind": "/v", "mode": "rw"}},
            name="compat-once",
        )
        c.start()
        status = c.wait(timeout=120)
        check(status["StatusCode"] == 0, f"wait {status}")
        out = c.logs(stdout=True, stderr=False).decode()
        err = c.logs(stdout=False, stderr=True).decode()
        check(out == "hello from docker-py\n", f"stdout {out!r}")
        check(err == "to stderr\n", f"stderr {err!r}")
        state["once"] = c

    step("container create, start, wait, logs", run_to_completion)

    def exec_in_running():
        c = client.containers.run(a.image, ["sleep", "300"], detach=True, name="compat-sleeper")
        state["sleeper"] = c
        code, out = c.exec_run(["sh", "-c", "cat /etc/hostname >/dev/null; echo exec says hi"])
        check(code == 0, f"exec exit {code}")
        check(out == b"exec says hi\n", f"exec output {out!r}")
        code, _ = c.exec_run(["sh", "-c", "exit 3"])
        check(code == 3, f"exec exit {code}")

    step("exec", exec_in_running)

    def stats():
        s = state["sleeper"].stats(stream=False)
        check("memory_stats" in s and "cpu_stats" in s, f"stats keys {sorted(s)}")
        check(s["memory_stats"].get("usage", 0) > 0, f"memory {s['memory_stats']}")

    step("stats one sample", stats)

    def df():
        d = client.df()
        check(any(a.image in (i.get("RepoTags") or []) for i in d["Images"]), "image not in df")
        check(any(v["Name"] == "compat-vol" for v in d["Volumes"]), "volume not in df")
        check(len(d["Containers"]) >= 2, f"containers in df: {len(d['Containers'])}")

    step("system df", df)

    def remove():
        state["sleeper"].remove(force=True)
        state["once"].remove()
        client.volumes.get("compat-vol").remove()
        check(client.containers.list(all=True) == [], "containers left")
        check("compat-vol" not in [x.name for x in client.volumes.list()], "volume left")

    step("container and volume remove", remove)

    def events():
        until = int(time.time()) + 1
        seen = list(
            api.events(
                since=t0,
                until=until,
                filters={"type": "container", "event": "start"},
                decode=True,
            )
        )
        names = sorted(e["Actor"]["Attributes"].get("name") for e in seen)
        check(names == ["compat-once", "compat-sleeper"], f"start events for {names}")
        check(all(e["Action"] == "start" for e in seen), "other actions passed the filter")

    step("events with a filter", events)

    def image_remove():
        client.images.remove(a.image)
        listed = [t for img in client.images.list() for t in img.tags]
        check(a.image not in listed, f"still listed: {listed}")

    step("image remove", image_remove)

    client.close()
    if failures:
        print(f"FAILED: {', '.join(failures)}")
        sys.exit(1)
    print("all steps passed")


if __name__ == "__main__":
    main()
