"""`servetune tune`: read the inputs, search by simulation, keep the front, verify the best for real, report.

Stages in order, each writing into the tune folder:
1. inputs: the space, each model's calibration (the space's and the baselines') and measured accuracy, the
   profile, the constraints; a space in which no candidate can be feasible is refused before anything runs;
2. search: the evolutionary search over every core, at a budget of simulated candidates, its first generation
   seeded with the baselines (each mapped to the nearest candidate of the space; one whose model or kind of
   scaling the space lacks only bounds and is compared);
3. record: candidates.csv, frontier.csv/json (the feasible Pareto front), the baselines simulated;
4. verify: the baselines that bound the candidates (--no-slower-than, --better-than) run for real first, and
   their measured statistics become the bounds; then the first `verify` candidates of the front (in the
   recommendation rule's order) run for real with `servetune run` into verify/<id>, next to their simulation
   at the same time scale; with --verify-repeats N each of these runs N times (verify/<id>-r1 ..), judged
   on its means;
5. recommend and report: recommended.yaml (the first candidate that passed verification, or the rule's
   first pick when none was verified), its manifests, report.html.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path

from rich.console import Console

from servetune.backend.protocol import BackendName
from servetune.config import DeploymentSpec, RunSummary
from servetune.deploy.capacity import Capacity
from servetune.deploy.local import model_footprint
from servetune.deploy.spec import SpecError, load_deployment_spec, spec_model_path
from servetune.errors import ServetuneError
from servetune.host.cgroups import allocatable
from servetune.load.profile import LoadProfileError, load_profile
from servetune.model.artifact import ArtifactError
from servetune.sim.simulate import MetricsTiming, Simulation
from servetune.tune.calibration import CalibrationError
from servetune.tune.calibration_check import check_calibrations
from servetune.tune.constraints import (
    DEFAULT_HEADROOM,
    Constraints,
    ModelFacts,
    baseline_bounds,
    model_facts,
    response_cap,
    space_problems,
)
from servetune.tune.evaluate import (
    MEMORY_SHARING,
    CandidateSimulator,
    ModelCalibrations,
    calibrations_for,
    memory_never_binds,
    other_models,
    process_pool,
)
from servetune.tune.frontier import EmptyFrontier, Rule, frontier, why_empty
from servetune.tune.plots import pareto_plot, replicas_plot
from servetune.tune.report import SearchFacts, write_tune_report
from servetune.tune.search import Evaluation, Genome, Problem, baseline_seeds, evolve
from servetune.tune.space import (
    SearchSpace,
    SpaceError,
    candidate_spec,
    load_space,
)
from servetune.tune.tune_folder import (
    baseline_labels,
    candidate_id,
    write_candidates,
    write_frontier,
    write_manifests,
    write_spec,
    write_verifications,
)
from servetune.tune.verify import RealRun, Verification, verify

STRATEGY = "NSGA-II evolutionary multi-objective search"


class TuneError(ServetuneError, ValueError):
    """Input that cannot start a tune; the message names the file or flag and the problem."""


@dataclass
class TuneOptions:
    out: Path
    profile: str = "reference"
    space: Path | None = None
    calibrations: list[Path] = field(default_factory=list)
    constraints: Constraints = field(default_factory=Constraints)
    budget: int = 2000
    population: int = 64
    seed: int = 0
    jobs: int | None = None
    verify: int = 3
    real: RealRun = field(default_factory=RealRun)
    baselines: list[str] = field(default_factory=lambda: ["default"])
    no_slower_than: list[str] = field(default_factory=list)  # specs whose response time bounds the candidates'
    better_than: list[str] = field(default_factory=list)  # specs whose memory, CPU requested and response time do
    headroom: float = DEFAULT_HEADROOM  # the search's bounds from baselines this fraction below their simulation
    report_sections: list[str] = field(default_factory=list)  # HTML placed at the top of report.html

    def rule(self) -> Rule:
        """The knee of the front when nothing bounds the response time, else least memory first."""
        if self.constraints.max_response_ms is None and not self.bounding():
            return Rule.KNEE
        return Rule.LEAST_MEMORY

    def bounding(self) -> list[str]:
        """The baselines that bound the candidates, each once."""
        return list(dict.fromkeys([*self.no_slower_than, *self.better_than]))

    def labels(self) -> dict[str, str]:
        """Each baseline as given (a packaged spec's name, a path) -> the label it is shown and filed by."""
        return baseline_labels(list(dict.fromkeys([*self.baselines, *self.bounding()])), reserved=["recommended"])

    def labelled(self) -> TuneOptions:
        """These options with each baseline named by its label."""
        labels = self.labels()
        return replace(self, baselines=[labels[n] for n in self.baselines],
                       no_slower_than=[labels[n] for n in self.no_slower_than],
                       better_than=[labels[n] for n in self.better_than])

    def search_bounds(self, constraints: Constraints, simulated: Mapping[str, RunSummary]) -> Constraints:
        """What the search asks of a candidate: the baselines' simulated figures, less the headroom."""
        return baseline_bounds(constraints, simulated, "simulated", self.no_slower_than, self.better_than,
                               self.headroom)

    def verification_bounds(self, constraints: Constraints,
                            measured: Mapping[str, RunSummary | Sequence[RunSummary]]) -> Constraints:
        """What a verified candidate must measure: the baselines' measured figures, as they are."""
        return baseline_bounds(constraints, measured, "measured", self.no_slower_than, self.better_than)


@dataclass
class Inputs:
    constraints: Constraints  # with the capacity of this machine for --backend local
    space: SearchSpace
    facts: dict[str, ModelFacts]
    simulator: CandidateSimulator
    baselines: dict[str, DeploymentSpec]
    calibrations: ModelCalibrations


@dataclass
class TuneResult:
    out: Path
    evaluations: list[Evaluation]
    front: list[Evaluation]
    recommended: Evaluation
    recommended_spec: DeploymentSpec  # what recommended.yaml holds
    verifications: list[Verification]
    baselines: dict[str, RunSummary]
    baseline_runs: list[Verification]
    constraints: Constraints  # in the search: the baselines' bounds simulated
    verified_against: Constraints  # in the verification: the baselines' bounds measured
    seconds: float
    report: Path
    recommended_note: str = ""  # how it was chosen: verified, or why not
    recommended_verification: Verification | None = None  # its own real runs, when it was verified
    other_models: dict[str, str] = field(default_factory=dict)  # baseline -> its model, where not the pick's


def read_inputs(options: TuneOptions) -> Inputs:
    """Everything a tune needs, checked before it starts; TuneError otherwise."""
    if (options.out / "frontier.json").exists():
        raise TuneError(f"{options.out}: already holds a tune (frontier.json); choose another --out")
    try:
        space = load_space(options.space)
        profile = load_profile(options.profile)
        calibrations = calibrations_for(space.models, options.calibrations)
        facts = {model: model_facts(model, calibrations.calibrations[model]) for model in space.models}
        base = load_deployment_spec(space.base)
        baselines = {label: load_deployment_spec(name) for name, label in options.labels().items()}
    except (SpaceError, LoadProfileError, CalibrationError, ArtifactError, SpecError) as error:
        raise TuneError(str(error)) from None
    for name, label in options.labels().items():  # a baseline's model may be outside the space: still simulated
        try:
            calibrations.add(baselines[label].model)
        except CalibrationError as error:
            raise TuneError(f"baseline {name}: {error}") from None
    labelling_problems(options.labelled(), base, baselines)
    backend = str(options.real.backend)
    for model, calibration in calibrations.calibrations.items():
        if calibration.backend != backend:
            calibrations.warnings.append(
                f"model {model}: its calibration was measured on the {calibration.backend} backend and the "
                f"tune simulates --backend {backend}: that backend's CPUs may be faster or slower (calibrate "
                f"there: servetune tune calibrate --backend {backend}, or --from-run RUN of a run there)")
    constraints, node_cpu = options.constraints, None
    if options.real.backend == BackendName.LOCAL and options.verify > 0:
        # the verification's replicas start only with a memory limit above the model's footprint
        facts = {model: replace(fact, footprint_bytes=model_footprint(spec_model_path(model)))
                 for model, fact in facts.items()}
    if options.real.backend == BackendName.LOCAL:
        # The one-machine cluster: this machine's cores and memory hold the pods, and its cores the load
        # driver too, as `servetune simulate --backend local` assumes.
        capacity = constraints.capacity or Capacity(*allocatable())
        constraints, node_cpu = replace(constraints, capacity=capacity), capacity.cpu_cores
    problems = space_problems(space, facts, constraints)
    if problems:
        where = options.space or "the bundled space"
        raise TuneError(f"{where}: infeasible search space: " + "; ".join(problems))
    simulator = CandidateSimulator(profile, calibrations.calibrations, base, constraints.capacity,
                                   MetricsTiming(backend=options.real.backend), options.seed, node_cpu)
    return Inputs(constraints, space, facts, simulator, baselines, calibrations)


def labelling_problems(options: TuneOptions, base: DeploymentSpec, baselines: Mapping[str, DeploymentSpec]) -> None:
    """With labelling users, every spec run for real (the candidates, made from the space's base spec, and
    the baselines that bound them) must hold uploads out; TuneError naming the first that does not."""
    from servetune.run import RunError, held_out_spec

    real = options.real
    if real.labelling is None:
        return
    if options.verify == 0:
        raise TuneError("--labelling-users: the labelling users play beside the verification's real runs, and "
                        "--verify 0 runs none")
    for name, spec in [("the space's base spec", base), *((f"baseline {b}", baselines[b]) for b in options.bounding())]:
        try:
            held_out_spec(spec, real.holdout_fraction, real.labelling)
        except RunError as error:
            raise TuneError(f"--labelling-users: {name}: {error}") from None


def tune(options: TuneOptions, console: Console | None = None,
         on_batch: Callable[[list[Evaluation]], None] | None = None,
         on_searched: Callable[[], None] | None = None) -> TuneResult:
    """The whole tune into options.out. TuneError before anything runs; EmptyFrontier (after writing
    candidates.csv) when no candidate met the constraints. `on_batch` follows the search, `on_searched` is
    called once it is over, before anything else is printed (a progress bar ends there, so that it does not
    share the terminal with the verification's live load table)."""
    console = console or Console(stderr=True)
    inputs = read_inputs(options)
    options = options.labelled()  # the baselines are named by their labels from here on
    for warning in inputs.calibrations.warnings:
        console.print(f"warning: {warning}", style="yellow", markup=False, highlight=False, soft_wrap=True)
    out = options.out
    out.mkdir(parents=True, exist_ok=True)
    jobs = options.jobs or os.cpu_count() or 1

    simulated = {name: inputs.simulator.spec_simulation(spec, spec.model, record=True)
                 for name, spec in inputs.baselines.items()}
    baselines = {name: simulation.statistics for name, simulation in simulated.items()}
    rule = options.rule()
    constraints = response_cap(options.search_bounds(inputs.constraints, baselines), baselines)

    seeds, notes = baseline_seeds(inputs.space, inputs.baselines, constraints)
    for note in notes:
        console.print(note, highlight=False)
    problem, seconds = search(options, inputs, constraints, seeds, jobs, on_batch)
    if on_searched is not None:
        on_searched()
    evaluations = problem.evaluations
    ids = {id(e): candidate_id(index) for index, e in enumerate(evaluations)}

    front = frontier(evaluations, rule)
    write_candidates(evaluations, front, out / "candidates.csv")
    if not front:
        raise EmptyFrontier(why_empty(evaluations, constraints))
    specs = [candidate_spec(e.candidate, inputs.simulator.base) for e in front]
    write_frontier(front, ids, specs, constraints, rule, out)

    baseline_runs, verifications, bar = verify_front(options, inputs, front, specs, ids, console)
    if verifications:  # frontier.csv/json again, with the live accuracy the verified candidates measured
        write_frontier(front, ids, specs, constraints, rule, out,
                       {ids[id(e)]: v.live for e, v in zip(front, verifications, strict=False)})
    recommended, note, own_runs = pick(front, verifications)
    others = other_models(inputs.baselines, recommended.candidate.model, inputs.calibrations)
    notes += [f"baseline {name} serves another model ({model}) than the recommended one: its figures compare "
              "another model as well as another deployment" for name, model in others.items()]
    spec = specs[front.index(recommended)]
    figures = write_recommended(out, inputs, spec, recommended, note, simulated, evaluations, front)
    seeding = [f"First generation seeded with {e.seeded_from}: {ids[id(e)]} {e.candidate.label()}"
               for e in evaluations if e.seeded_from]
    facts = SearchFacts(STRATEGY, inputs.space.size(), len(evaluations), problem.simulated, problem.simulations,
                        seconds, jobs, options.profile, options.real.backend, [*seeding, *notes],
                        inputs.calibrations.used, inputs.calibrations.warnings)
    report = write_tune_report(out, facts=facts, constraints=constraints, bar=bar, front=front, ids=ids,
                               recommended=recommended, recommended_note=note, rule=rule, baselines=baselines,
                               verifications=[*baseline_runs, *verifications], figures=figures,
                               sections=options.report_sections)
    return TuneResult(out, evaluations, front, recommended, spec, verifications, baselines, baseline_runs, constraints,
                      bar, seconds, report, note, own_runs, others)


def search(options: TuneOptions, inputs: Inputs, constraints: Constraints, seeds: list[tuple[str, Genome]],
           jobs: int, on_batch: Callable[[list[Evaluation]], None] | None) -> tuple[Problem, float]:
    """The evolutionary search over `jobs` processes, and the seconds it took."""
    began = time.perf_counter()
    # When memory never limits the pods, memory settings change only the memory figures: such twins share
    # one simulation.
    sharing = MEMORY_SHARING if memory_never_binds(inputs.space, constraints.capacity) else None
    problem = Problem(inputs.space, inputs.facts, constraints, inputs.simulator, on_batch=on_batch,
                      sharing=sharing)
    with process_pool(jobs) as mapper:
        problem.mapper = mapper
        evolve(problem, options.budget, options.population, options.seed, seeds)
    return problem, time.perf_counter() - began


def verify_front(options: TuneOptions, inputs: Inputs, front: list[Evaluation], specs: list[DeploymentSpec],
                 ids: dict[int, str], console: Console) -> tuple[list[Verification], list[Verification], Constraints]:
    """The real runs: the bounding baselines, then the front's first candidates; (the baselines' runs, the
    candidates', the bounds the candidates' were judged by)."""
    out = options.out
    short_profile = load_profile(options.real.profile, options.real.time_scale)

    def verify_spec(folder: str, label: str, spec: DeploymentSpec, bar: Constraints) -> Verification:
        spec_file = write_spec(spec, out / "specs" / f"{folder}.yaml", label)
        runs = f", {options.real.repeats} runs" if options.real.repeats > 1 else ""
        console.print(f"[bold]verify[/] {label} for real ({options.real.profile}, time scale "
                      f"{options.real.time_scale:g}{runs})", highlight=False)
        same_scale = inputs.simulator.spec_simulation(spec, spec.model, profile=short_profile).statistics
        item = verify(label, spec, spec_file, out / "verify" / folder, same_scale, options.real, bar, console)
        console.print(f"    {item.verdict()}", highlight=False)
        if accuracy := item.accuracy_text():
            console.print(f"    {accuracy}", highlight=False, markup=False)
        for note in item.shared_machine_notes():
            console.print(f"    note: {note}", style="yellow", highlight=False, markup=False)
        return item

    # The baselines that bound the candidates run first, on the same machine: their measured statistics are
    # the bar for the candidates' measured ones (a loaded machine slows every run alike).
    # The response cap (no bound given) is the search's only: it is a simulated full-profile figure, and a
    # verification run (compressed, on a shared machine) is judged by measured bounds only.
    baseline_runs, bar = [], inputs.constraints
    if options.verify > 0 and options.bounding():
        measured = {}
        for name in options.bounding():
            run = verify_spec(f"baseline-{name}", name, inputs.baselines[name], inputs.constraints)
            baseline_runs.append(run)
            if run.status == "interrupted":
                break
            if run.measured:
                measured[name] = run.measured
        bar = options.verification_bounds(inputs.constraints, measured)
    verifications = []
    for evaluation, spec in list(zip(front, specs, strict=True))[: options.verify]:
        if any(run.status == "interrupted" for run in [*baseline_runs, *verifications]):
            break  # Ctrl-C: keep what was measured and write the report
        label = f"{ids[id(evaluation)]} {evaluation.candidate.label()}"
        verifications.append(verify_spec(ids[id(evaluation)], label, spec, bar))
    if baseline_runs or verifications:
        write_verifications([*baseline_runs, *verifications], out / "verification.json")
        # the real runs measured the CPU per request the simulation assumed: warn where they disagree
        for warning in check_calibrations(inputs.calibrations, [r.run_dir for v in [*baseline_runs, *verifications]
                                                                for r in v.repeats]):
            console.print(f"warning: {warning}", style="yellow", markup=False, highlight=False, soft_wrap=True)
            inputs.calibrations.warnings.append(warning)
    return baseline_runs, verifications, bar


def pick(front: list[Evaluation], verifications: list[Verification]) -> tuple[Evaluation, str, Verification | None]:
    """The recommendation: the first verified candidate that passed, else the rule's first pick; how it was
    chosen; its own real runs."""
    recommended, note, own_runs = front[0], "the rule's first pick, by simulation; not verified", None
    if verifications:
        passed = [v for v in verifications if v.passed]
        own_runs = passed[0] if passed else verifications[0]
        if passed:
            index = verifications.index(passed[0])
            recommended = front[index]
            note = "verified by a real run" + (" (the candidates before it failed verification)" if index else "")
        else:
            note = "the rule's first pick by simulation; every verified candidate failed verification"
    return recommended, note, own_runs


def write_recommended(out: Path, inputs: Inputs, spec: DeploymentSpec, recommended: Evaluation, note: str,
                      simulated: dict[str, Simulation], evaluations: list[Evaluation], front: list[Evaluation]) -> list[tuple[Path, str]]:
    """recommended.yaml, its manifests, the simulated run folders (`simulated`: the baselines') and the plots
    (with their captions)."""
    baselines = {name: simulation.statistics for name, simulation in simulated.items()}
    write_spec(spec, out / "recommended.yaml", f"{recommended.candidate.label()}\n{note}")
    write_manifests(spec, out / "recommended-manifests.yaml")
    simulated = {"recommended": inputs.simulator.simulation(recommended.candidate, record=True), **simulated}
    for name, simulation in simulated.items():
        simulation.write(out / "simulated" / name)

    figures = [
        (pareto_plot(evaluations, front, recommended, baselines, out / "pareto.png"),
         "Pareto plots: memory and CPU requested against response time, coloured by accuracy"),
        (replicas_plot({name: s.resources for name, s in simulated.items()}, out / "replicas.png"),
         "Replicas over the profile: recommended against the baselines (simulated)"),
    ]
    return figures

