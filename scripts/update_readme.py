"""Writes the demo's results into README.md, between the demo-results marker comments.

    keras-recalib demo --out OUT          # a clean run, on a quiet machine
    python scripts/update_readme.py OUT/results.json [--readme README.md]

The block says on which machine, with which versions, seeds and settings, and in how much time
the run was made; the tables come from `keras_recalib.demo.format_results`, the same text the
demo prints. Nothing in the block is typed by hand.
"""

import argparse
import json
import pathlib
import sys

BEGIN = "<!-- demo-results:begin (scripts/update_readme.py writes this block) -->"
END = "<!-- demo-results:end -->"


def _duration(seconds):
    minutes, seconds = divmod(int(round(seconds)), 60)
    return f"{minutes} min {seconds:02d} s"


def render(results):
    """The README block for one `results.json` (markers excluded)."""
    from keras_recalib.demo import SCHEMA, format_results

    if results.get("schema") != SCHEMA:
        raise ValueError(
            f"Expected a results.json of schema {SCHEMA!r}. Received: schema="
            f"{results.get('schema')!r}"
        )
    env, config, data = results["environment"], results["config"], results["data"]
    timing = results["timing"]
    seeds = config["seeds"]
    versions = ", ".join(
        f"{name} {env[key]}"
        for name, key in (
            ("Python", "python"),
            ("tensorflow", "tensorflow"),
            ("keras", "keras"),
            ("numpy", "numpy"),
            ("scikit-image", "scikit_image"),
        )
        if env.get(key)
    )
    steps = data["train_images"] // config["batch_size"]
    intro = (
        f"One run of `keras-recalib demo` with {len(seeds)} seeds ({', '.join(map(str, seeds))}) "
        f"on {env['cpu']} ({env['cpu_count']} cores available), {_duration(timing['wall_seconds'])}"
        f" in all ({_duration(timing['cpu_seconds'])} of CPU time); {versions}. Data: "
        f"{data['source']}: {data['train_images']} training and {data['held_out_images']} "
        f"held-out images, {len(data['classes'])} classes. Recipe: ResNet-{config['depth']}, "
        f"{config['epochs']} epochs of {steps} steps (batch {config['batch_size']}), AdamW with "
        f"peak learning rate {config['learning_rate']:g} after a {config['warmup_epochs']:g}-epoch "
        f"linear warm-up, cosine decay, weight decay {config['weight_decay']:g} (not on SRM, "
        "batch norm or biases). `params` counts "
        f"{results['parameter_convention']}; `held-out acc` is the mean ± sample standard "
        "deviation over the seeds."
    )
    return f"{intro}\n\n{format_results(results, markdown=True)}"


def update(readme_text, block):
    """`readme_text` with the text between the markers replaced by `block`."""
    start, end = readme_text.find(BEGIN), readme_text.find(END)
    if start < 0 or end < start:
        raise ValueError(
            f"The README needs the markers {BEGIN!r} and then {END!r}. Received: a README "
            "without them"
        )
    return readme_text[: start + len(BEGIN)] + "\n" + block + "\n" + readme_text[end:]


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("results", help="results.json written by keras-recalib demo")
    parser.add_argument("--readme", default="README.md", help="default: README.md")
    args = parser.parse_args(argv)
    results = json.loads(pathlib.Path(args.results).read_text())
    readme = pathlib.Path(args.readme)
    try:
        text = update(readme.read_text(), render(results))
    except ValueError as error:
        print(f"update_readme: error: {error}", file=sys.stderr)
        return 2
    readme.write_text(text)
    print(f"{readme}: demo results of {args.results} written")
    return 0


if __name__ == "__main__":
    sys.exit(main())
