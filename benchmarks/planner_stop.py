"""How long a SIGINT takes to stop a planet_state run while it plans (issue 21, item 12): start the recipe, wait
for the first updates (the prefill done), send SIGINT 3 s into the planning, time until the process exits
(checkpoint included). python benchmarks/planner_stop.py [RUN_ROOT]"""
import os
import pathlib
import signal
import subprocess
import sys
import time

run = pathlib.Path(sys.argv[1] if len(sys.argv) > 1 else "/tmp/planner_stop")
env = {**os.environ, "MUJOCO_GL": "egl", "OMP_NUM_THREADS": "1"}
p = subprocess.Popen([sys.executable, "recipes/dreamer_dmc.py", "--preset", "planet_state", "--run.run-dir", str(run),
                      "--run.run-name", "p", "--run.no-progress"], env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
if (run / "p").exists():
    raise SystemExit(f"error: {run / 'p'} exists; give an empty RUN_ROOT")
csv = run / "p" / "logs" / "scalars" / "train" / "updates.csv"
t0 = time.time()
while not csv.exists() and time.time() - t0 < 200:
    time.sleep(0.2)
time.sleep(3)  # now planning
t = time.time(); p.send_signal(signal.SIGINT); out = p.communicate(timeout=300)[0]
print("first updates logged after", round(t - 3 - t0, 1), "s; SIGINT to exit", round(time.time() - t, 1), "s, code", p.returncode)
print(out[-600:])
