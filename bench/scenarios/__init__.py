"""`seawatch bench scenarios`: the agent on the simulator's labelled faults and normal weeks."""
