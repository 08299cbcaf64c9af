"""A readable account of one raw run: what the controller did, epoch by epoch, and what came of it."""

from __future__ import annotations

from pathlib import Path

from ..world.rawrun import read_raw_run


def episode_story(path: str | Path) -> str:
    run = read_raw_run(path)
    config, task = run.header["config"], run.header["task"]
    lines = [
        f"run {run.run_id}: {task['dataset']} ({task['train_size']} train / {task['val_size']} val), "
        f"host widths {config['host']['widths']}, controller {run.header['controller']['name']}, "
        f"{config['max_epochs']} epochs, lr {config['learning_rate']:.3g} ({config['lr_schedule']}), seed {config['seed']}",
        "",
        f"{'step':>4} {'val acc':>8} {'plateau':>7}  {'slot stage':<13} {'action':<22} {'p':>5} {'reward':>7}  events",
    ]
    for step in run.steps:
        obs, action, outcome = step["observation"], step["action"], step["outcome"]
        stages = ",".join(s["stage"] for s in obs["slots"]) or "-"
        events = "; ".join(
            f"{e['from_stage']}->{e['to_stage']}" + (f" ({e['detail']})" if e["detail"] else "") for e in outcome["events"]
        )
        if outcome["gate"] and not outcome["gate"]["passed"]:
            events = f"gate refused: {outcome['gate']['reason']}"
        interesting = action["fine"] != "WAIT" or events
        if interesting or step["step"] in (1, len(run.steps)) or step["step"] % 5 == 0:
            lines.append(
                f"{step['step']:>4} {obs['val_accuracy']:>7.2f}% {obs['plateau_epochs']:>7}  {stages:<13} "
                f"{action['fine']:<22} {action['propensity']:>5.2f} {outcome['reward']:>+7.2f}  {events}"
            )
    footer = run.footer
    if footer is None:
        lines.append("\n(no footer: the generator died before finishing this run)")
    else:
        lines.append(
            f"\n{footer['status']}: "
            + (f"test {footer['final_test_accuracy']:.2f}% (the split no decision saw), " if footer.get("final_test_accuracy") is not None else "")
            + (f"score {footer['score']:.2f} at rent {footer['rent']:g} (what decides), " if footer.get("rent") and footer.get("score") is not None else "")
            + f"final val {footer['final_val_accuracy']:.2f}%, best val {footer['best_val_accuracy']:.2f}%, "
            f"seeds {footer['seeds_created']} created / {footer['seeds_fossilized']} fossilized / "
            f"{footer['seeds_culled']} culled, parameters {run.header['host_parameters']} -> {footer['final_parameters']}, "
            f"{footer['wall_seconds']:.1f}s"
        )
        if footer.get("error"):
            lines.append(f"error: {footer['error']}")
    return "\n".join(lines)
