"""The closing lines of `servetune tune` and `tune --model`: what they say of a pick that failed verification."""

from pathlib import Path

from servetune.cli.tune_model import chosen_numbers
from servetune.cli.tune_output import verification_text
from servetune.tune.constraints import Constraints
from servetune.tune.verify import Repeat, judge
from tune.synthetic import summary


def judged(label: str, failure_rates: list[float]):
    """A spec's verification over one run per failure rate, by the default criteria (no failed request)."""
    runs = [summary(700 * 1024, 1.8, 4.0, failure_rate=rate) for rate in failure_rates]
    repeats = [Repeat(Path(f"{label}-r{n + 1}"), "completed", None, run) for n, run in enumerate(runs)]
    return judge(label, Path(f"{label}.yaml"), repeats, runs[0], Constraints())


def test_a_failed_pick_says_when_your_pair_failed_the_same_criterion_in_its_runs():
    pick, yours = judged("c1088 vgg16", [0.0791, 0.0]), judged("yours", [0.0769, 0.0])
    text = verification_text(pick, [yours], {"yours": "your pair"})
    assert text.startswith("FAILED verification (failure rate 7.91% (run 1 of 2) > 0.00%)")
    assert text.endswith("; your pair failed it as well: failure rate 7.69% (run 1 of 2) > 0.00%")
    assert verification_text(pick, [yours]).endswith("; baseline yours failed it as well: failure rate 7.69% "
                                                     "(run 1 of 2) > 0.00%")
    # a baseline that met the criterion, or none run: the pick alone failed
    alone = verification_text(pick, [judged("yours", [0.0, 0.0])], {"yours": "your pair"})
    assert "as well" not in alone and alone == verification_text(pick)
    assert "as well" not in verification_text(judged("c0001 x", [0.0]), [yours])  # it passed


def test_the_chosen_manifest_is_introduced_with_whether_its_numbers_passed_verification():
    assert chosen_numbers(judged("c1088 vgg16", [0.0791])) == (
        "the numbers and image of the simulator's best, which did NOT pass verification")
    assert chosen_numbers(judged("c0001 x", [0.0])) == "the chosen numbers and image (verified)"
    assert chosen_numbers(None) == "the chosen numbers and image (not verified: by simulation only)"
