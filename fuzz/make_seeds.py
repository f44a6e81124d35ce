#!/usr/bin/env python3
"""Writes the seed corpora in fuzz/seeds/: small valid inputs of each kind,
so the fuzzer starts from the shapes the readers accept. Run from fuzz/;
the output is committed, this script says how it was made."""
import hashlib, io, json, os, tarfile

SEEDS = os.path.join(os.path.dirname(os.path.abspath(__file__)), "seeds")
H = "0123456789abcdef" * 4


def put(target, name, data):
    os.makedirs(os.path.join(SEEDS, target), exist_ok=True)
    if isinstance(data, str):
        data = data.encode()
    with open(os.path.join(SEEDS, target, name), "wb") as f:
        f.write(data)


def sha(data):
    return "sha256:" + hashlib.sha256(data).hexdigest()


def tar(members):
    """members: (name, kind, payload) with kind file|dir|sym|link."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as t:
        for name, kind, payload in members:
            info = tarfile.TarInfo(name)
            info.mtime = 0
            if kind == "file":
                info.size = len(payload)
                t.addfile(info, io.BytesIO(payload))
                continue
            info.type = {"dir": tarfile.DIRTYPE, "sym": tarfile.SYMTYPE, "link": tarfile.LNKTYPE}[kind]
            info.linkname = payload or ""
            t.addfile(info)
    return buf.getvalue()


RECORD = json.dumps({
    "name": "six", "version": "1.17.0", "build": "pyh0_0", "build_number": 0,
    "subdir": "noarch", "depends": ["python"], "md5": "0" * 32, "sha256": "0" * 64,
    "url": "https://conda.anaconda.org/conda-forge/noarch/six-1.17.0-pyh0_0.conda",
    "channel": "https://conda.anaconda.org/conda-forge",
    "fn": "six-1.17.0-pyh0_0.conda", "files": ["lib/python3.11/site-packages/six.py"],
    "paths_data": {"paths_version": 1, "paths": [
        {"_path": "lib/python3.11/site-packages/six.py", "path_type": "hardlink",
         "sha256": "0" * 64, "size_in_bytes": 3}]},
    "requested_spec": "six",
}, indent=1)

LAYER = tar([
    ("lib", "dir", None),
    ("lib/x86_64-linux-gnu", "dir", None),
    ("lib/x86_64-linux-gnu/libc.so.6", "file", b"\x7fELF\x02\x01\x01" + b"\0" * 57 + b"GLIBC_2.36\0"),
    ("lib64", "dir", None),
    ("lib64/ld-linux-x86-64.so.2", "sym", "../lib/x86_64-linux-gnu/ld-linux-x86-64.so.2"),
    ("opt/conda/conda-meta", "dir", None),
    ("opt/conda/conda-meta/six-1.17.0-pyh0_0.json", "file", RECORD.encode()),
    ("opt/conda/conda-meta/.wh.old-1-0.json", "file", b""),
    ("opt/conda/pkgs/.wh..wh..opq", "file", b""),
    ("opt/conda/bin/python", "link", "lib/x86_64-linux-gnu/libc.so.6"),
    ("etc/os-release", "file", b'ID=debian\nVERSION_ID="12"\n'),
])
CONFIG = json.dumps({
    "architecture": "amd64", "os": "linux",
    "config": {"Env": ["PATH=/usr/bin:/bin"], "Cmd": ["sh"], "User": "0:0"},
    "rootfs": {"type": "layers", "diff_ids": [sha(LAYER)]},
    "history": [{"created": "1970-01-01T00:00:00Z", "created_by": "seed"}],
}).encode()


def docker_archive():
    manifest = json.dumps([{"Config": "config.json", "RepoTags": ["seed:latest"], "Layers": ["layer.tar"]}])
    return tar([("config.json", "file", CONFIG), ("layer.tar", "file", LAYER),
                ("manifest.json", "file", manifest.encode())])


def legacy():
    layer_id = hashlib.sha256(b"seed").hexdigest()
    meta = json.dumps({"id": layer_id, "architecture": "amd64", "os": "linux",
                       "config": {"Env": ["PATH=/bin"]}, "created": "1970-01-01T00:00:00Z"})
    return tar([("repositories", "file", json.dumps({"seed": {"latest": layer_id}}).encode()),
                (layer_id, "dir", None), (f"{layer_id}/VERSION", "file", b"1.0"),
                (f"{layer_id}/json", "file", meta.encode()), (f"{layer_id}/layer.tar", "file", LAYER)])


def manifest_json(config_digest, config_len, layer_digest, layer_len):
    return json.dumps({
        "schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json",
                   "digest": config_digest, "size": config_len},
        "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar",
                    "digest": layer_digest, "size": layer_len}],
        "annotations": {"org.opencontainers.image.created": "1970-01-01T00:00:00Z"},
    })


def oci_archive():
    manifest = manifest_json(sha(CONFIG), len(CONFIG), sha(LAYER), len(LAYER)).encode()
    nested = json.dumps({"schemaVersion": 2, "mediaType": "application/vnd.oci.image.index.v1+json",
                         "manifests": [{"mediaType": "application/vnd.oci.image.manifest.v1+json",
                                        "digest": sha(manifest), "size": len(manifest),
                                        "platform": {"architecture": "amd64", "os": "linux"}}]}).encode()
    index = json.dumps({"schemaVersion": 2, "manifests": [
        {"mediaType": "application/vnd.oci.image.index.v1+json", "digest": sha(nested), "size": len(nested),
         "annotations": {"org.opencontainers.image.ref.name": "latest"}}]}).encode()
    blobs = [(f"blobs/sha256/{sha(b)[7:]}", "file", b) for b in (CONFIG, LAYER, manifest, nested)]
    return tar([("oci-layout", "file", b'{"imageLayoutVersion":"1.0.0"}'), ("index.json", "file", index),
                ("blobs", "dir", None), ("blobs/sha256", "dir", None)] + blobs)


put("reference", "1", "debian:stable-slim")
put("reference", "2", f"ghcr.io/org/img:v1@sha256:{H}")
put("reference", "3", "localhost:5000/a/b-c/d_e:1.0")
put("reference", "4", f"sha256:{H}")
put("reference", "5", "docker.io/library/busybox")
put("image_config", "1", CONFIG)
put("docker_archive", "1", docker_archive())
put("docker_archive", "legacy", legacy())
put("oci_archive", "1", oci_archive())
put("oci_manifest", "1", manifest_json("CONFIG_DIGEST", 100, "LAYER_DIGEST", 100))
put("layer_tar", "1", LAYER)
put("explicit", "1", f"""# platform: linux-64
@EXPLICIT
https://conda.anaconda.org/conda-forge/noarch/six-1.17.0-pyh0_0.conda#sha256:{H}
https://conda.anaconda.org/conda-forge/linux-64/zlib-1.3.1-hb9d3cd8_2.conda#{H[:32]}
""")
put("environment_yml", "1", """name: demo
channels:
  - conda-forge
  - defaults
dependencies:
  - python=3.11
  - numpy>=1.26,<2
  - conda-forge::six
  - pip
  - pip:
    - requests==2.32.0
variables:
  FOO: bar
""")
put("lock_file", "pixi", f"""version: 6
environments:
  default:
    channels:
    - url: https://conda.anaconda.org/conda-forge/
    packages:
      linux-64:
      - conda: https://conda.anaconda.org/conda-forge/noarch/six-1.17.0-pyh0_0.conda
      - pypi: https://files.pythonhosted.org/packages/b7/ce/requests-2.32.0-py3-none-any.whl
packages:
- conda: https://conda.anaconda.org/conda-forge/noarch/six-1.17.0-pyh0_0.conda
  sha256: {H}
  md5: {H[:32]}
  depends:
  - python
  license: MIT
  size: 16458
  timestamp: 1733253163812
- pypi: https://files.pythonhosted.org/packages/b7/ce/requests-2.32.0-py3-none-any.whl
  name: requests
  version: 2.32.0
  sha256: {H}
  requires_dist:
  - idna>=2.5,<4
  requires_python: '>=3.8'
""")
put("lock_file", "conda-lock", f"""version: 1
metadata:
  content_hash:
    linux-64: {H}
  channels:
  - url: conda-forge
    used_env_vars: []
  platforms:
  - linux-64
  sources:
  - environment.yml
package:
- name: six
  version: 1.17.0
  manager: conda
  platform: linux-64
  dependencies:
    python: ''
  url: https://conda.anaconda.org/conda-forge/noarch/six-1.17.0-pyh0_0.conda
  hash:
    md5: {H[:32]}
    sha256: {H}
  category: main
  optional: false
""")
put("conda_record", "1", RECORD)
