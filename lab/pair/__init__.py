"""An ec2ha cluster pair built on the emulator by playbooks/site.yml: settings, inventory and
playbook runs (cluster.py), a client writing through the VIP (client.py), Pacemaker's view and
rejoining (health.py), node state over SSH (cluster_state.py), fence races (fence_race.py)."""
