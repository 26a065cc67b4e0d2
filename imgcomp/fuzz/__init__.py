"""Stream fuzzing: mutate valid streams of the codecs and decode each mutant in a forked
worker under time and memory limits, counting outcomes and saving reproducers.

    from imgcomp.fuzz import default_targets, run_campaign
    report = run_campaign(default_targets(img, quick=True), mutants_per_target=200)
    print(report.table())
"""

from imgcomp.fuzz.campaign import run_campaign
from imgcomp.fuzz.mutate import KINDS, RAW_KINDS, STRUCTURED_KINDS, mutate
from imgcomp.fuzz.report import FAILURES, OUTCOMES, CampaignReport, MutantResult, TargetReport
from imgcomp.fuzz.target import DECODE_PATHS, Target
from imgcomp.fuzz.targets import default_targets, fuzz_image
from imgcomp.fuzz.worker import classify_exception, decode_in_worker

__all__ = [
    "DECODE_PATHS",
    "FAILURES",
    "KINDS",
    "OUTCOMES",
    "RAW_KINDS",
    "STRUCTURED_KINDS",
    "CampaignReport",
    "MutantResult",
    "Target",
    "TargetReport",
    "classify_exception",
    "decode_in_worker",
    "default_targets",
    "fuzz_image",
    "mutate",
    "run_campaign",
]
