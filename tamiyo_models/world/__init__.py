"""The simulated training world a controller acts in, and nothing that decides.

    actions, blueprint_names   what a controller may do (coarse and fine actions)
    blueprints                 the modules a seed can graft, with their parameter costs
    lifecycle                  a seed's stages and the gates between them
    host, seed_slot            the host network and the slot a seed grows in
    telemetry, features        what is measured each epoch, and the observation features built from it
    reward                     the per-step reward
    score                      the score an episode is judged on, and the compute rent that charges growth
    datasets                   the tasks (digits, Fashion-MNIST, CIFAR, image folders) and their splits
    rawrun                     the raw run file an episode writes, and its reader
    configs                    reading configuration dataclasses back from dictionaries

Controllers (`controllers/`) read this world; episodes (`episodes/`) run it under a controller.
"""
