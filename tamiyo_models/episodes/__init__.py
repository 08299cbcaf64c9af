"""Running the world under a controller: one episode, its branches, and batches of them.

    episode        one host trained epoch by epoch, the controller deciding at each step (writes a raw run)
    branching      fork studies: snapshot an episode and continue copies of it with other actions
    rollout        policies rolled out live, with exploration, for the online learners
    generation     batches of diverse episodes from a generation spec, in worker processes
    distributed    the same batches on a Ray cluster
    story          a readable account of one raw run
"""
