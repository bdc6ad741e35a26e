"""prodloop's capabilities, grouped by the stage of the loop they serve; plain functions over explicit
collaborators (store, repo, runner, settings, clock).

    observe/    list_issues, fetch_error_context, record_deploy: what production says
    locate/     map_code_path and what it is built from: frames to files, release, blame, fault candidates
    reproduce/  synthesize_regression_test: call plans, value reconstruction, request replay, characterization
    judge/      run_candidate_test (the gates, hermetic and static checks) and mutate_validate
    ship/       open_pr, GitHub, provenance, suggest_suite_changes and applying them, flaky quarantine
    loop.py     the headless loop over all of them; budget.py the per-issue budgets they spend
    engine/     what they run on: the git boundary, confined runs (runner, sandbox), diffs, function extents
    child/      scripts that run inside confined processes (pytest probe, mutation driver and generator)
"""
