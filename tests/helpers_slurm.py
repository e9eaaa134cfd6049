"""A real one-node Slurm cluster for the tests: munged, slurmctld and slurmd on 127.0.0.1, in a temporary folder.

Needs Debian's `slurm-wlm` and `munge` (`.ci/run` installs them) and root (slurmd runs jobs as their
user). Its own munged (own key and socket), its own ports and state folders: nothing of the machine's
own configuration is used or changed. Processes are tracked by the process group (`proctrack/pgid`),
no cgroups; two CPUs and two GPUs declared as generic resources (files standing in for the devices),
so `--gres=gpu:1` is scheduled and counted like on a GPU cluster. No accounting database: job states
come from squeue, which keeps ended jobs for `MinJobAge` seconds.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

DAEMONS = ("munged", "munge", "slurmctld", "slurmd", "sbatch", "squeue", "scancel", "scontrol", "sinfo")


@dataclass
class Cluster:
    root: Path
    conf: Path
    processes: list = field(default_factory=list)

    def env(self) -> dict:
        return {**os.environ, "SLURM_CONF": str(self.conf)}

    def run(self, *args: str, check: bool = True) -> str:
        result = subprocess.run(list(args), env=self.env(), capture_output=True, text=True, timeout=60)
        if check and result.returncode:
            raise AssertionError(f"{' '.join(args)} failed: {result.stderr}{result.stdout}")
        return result.stdout

    def logs(self) -> str:
        return "\n".join(f"--- {p.name}\n{p.read_text(errors='replace')[-3000:]}" for p in sorted((self.root / "log").iterdir()))

    def stop(self) -> None:
        """Cancel every job, wait for them to end, stop the daemons, remove the folder."""
        try:
            self.run("scancel", "--full", "--user", "root", check=False)
            deadline = time.time() + 60
            while time.time() < deadline and self.run("squeue", "--noheader", "--states=PENDING,RUNNING,COMPLETING",
                                                      check=False).strip():
                time.sleep(1)
        finally:
            for process in reversed(self.processes):
                process.terminate()
                try:
                    process.wait(timeout=30)
                except subprocess.TimeoutExpired:
                    process.kill()
                    process.wait()
            shutil.rmtree(self.root, ignore_errors=True)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _slurm_conf(root: Path, node: str) -> str:
    return f"""# transfergrid tests: a one-node cluster on 127.0.0.1 (written by tests/helpers_slurm.py)
ClusterName=transfergrid-test
SlurmctldHost={node}(127.0.0.1)
SlurmctldPort={_free_port()}
SlurmdPort={_free_port()}
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
CredType=cred/munge
AuthInfo=socket={root}/munge.socket
ProctrackType=proctrack/pgid
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
SelectType=select/cons_tres
SelectTypeParameters=CR_CPU
SchedulerType=sched/backfill
MpiDefault=none
SwitchType=switch/none
ReturnToService=2
MinJobAge=3600
KillWait=10
GresTypes=gpu
StateSaveLocation={root}/state
SlurmdSpoolDir={root}/spool
SlurmctldPidFile={root}/slurmctld.pid
SlurmdPidFile={root}/slurmd.pid
SlurmctldLogFile={root}/log/slurmctld.log
SlurmdLogFile={root}/log/slurmd.log
NodeName={node} NodeAddr=127.0.0.1 CPUs=2 RealMemory=4000 Gres=gpu:2 State=UNKNOWN
PartitionName=debug Nodes=ALL Default=YES MaxTime=INFINITE State=UP
"""


def start_cluster() -> tuple[Cluster | None, str]:
    """Configure and start the cluster; returns (cluster, "") or (None, why it cannot run here)."""
    missing = [name for name in DAEMONS if shutil.which(name) is None]
    if missing:
        return None, f"Slurm/munge not installed ({', '.join(missing)} missing): apt-get install slurm-wlm munge"
    if os.geteuid() != 0:
        return None, "a one-node Slurm cluster needs root (slurmd starts jobs as their user)"
    root = Path(tempfile.mkdtemp(prefix="tg-slurm-"))
    root.chmod(0o755)  # munged refuses a socket in a folder others cannot traverse
    for name in ("state", "spool", "log"):
        (root / name).mkdir()
    key = root / "munge.key"
    key.write_bytes(os.urandom(1024))
    key.chmod(0o400)
    node = socket.gethostname().split(".")[0]  # slurmd's own node name
    (root / "gres.conf").write_text(f"NodeName={node} Name=gpu File={root}/gpu[0-1]\n")
    for i in range(2):
        (root / f"gpu{i}").touch()
    conf = root / "slurm.conf"
    conf.write_text(_slurm_conf(root, node))
    cluster = Cluster(root, conf)
    log = root / "log"
    starts = [
        ["munged", "--foreground", f"--socket={root}/munge.socket", f"--key-file={key}", f"--pid-file={root}/munged.pid",
         f"--seed-file={root}/munged.seed"],
        ["slurmctld", "-D", "-i", "-f", str(conf)],
        ["slurmd", "-D", "-f", str(conf)],
    ]
    try:
        for args in starts:
            out = (log / f"{args[0]}.out").open("w")
            cluster.processes.append(subprocess.Popen(args, env=cluster.env(), stdout=out, stderr=subprocess.STDOUT,
                                                      start_new_session=True))
            if args[0] == "munged" and not _wait(lambda: subprocess.run(
                    ["munge", "-S", f"{root}/munge.socket", "-n"], capture_output=True).returncode == 0, 20):
                raise RuntimeError("munged did not answer on its socket")
        if not _wait(lambda: cluster.run("sinfo", "--noheader", "--Node", "--format=%T", check=False).strip() == "idle", 60):
            raise RuntimeError("the node did not become idle: " + cluster.run("sinfo", "-N", "-o", "%N %T %E", check=False))
    except Exception as error:  # noqa: BLE001 - any failure to start means: skip, saying why
        why = f"the Slurm daemons did not start: {error}\n{cluster.logs()}"
        cluster.stop()
        return None, why
    return cluster, ""


def _wait(ready, timeout: float) -> bool:
    deadline = time.time() + timeout
    while time.time() < deadline:
        if ready():
            return True
        time.sleep(0.5)
    return False
