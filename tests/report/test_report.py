"""The compare report: files written, figures embedded, the words computed by hand."""

from __future__ import annotations

import base64
import re

import numpy as np
import pandas as pd
import pytest

from reflexdrive.report import plots
from reflexdrive.report.document import (
    DECISION_HEADER,
    HEADLINE_HEADER,
    NO_CRITICAL,
    build_figures,
    criticality_sentences,
    decision_rows,
    fastest,
    headline_rows,
    latency_cost,
    read_tables,
    stage_table,
    summary_sentences,
    write_report,
)
from reflexdrive.report.reading import base_stack, execution_labels, labelled
from reflexdrive.report.sentences import execution_sentences

NAN = float("nan")


def summary_row(stack, scenario, mode, extra, reaction=(0.6, 0.55, 0.65), reacted=10,
                collision=(0.0, 0.0, 0.28), episodes=10, parts=(0.05, 0.3, 0.25),
                critical=None):
    """A summary.csv row; `critical` episodes of `episodes` (default all) are rated."""
    mean, lo, hi = reaction
    rate, rate_lo, rate_hi = collision
    critical = episodes if critical is None else critical
    return {
        "stack": stack, "scenario": scenario, "mode": mode, "extra_latency_s": extra,
        "latency": "measured", "envs": 1, "budget_s": 0.1, "episodes": episodes,
        "rates_over": "critical", "critical_episodes": critical,
        "noncritical_episodes": episodes - critical, "rated_episodes": critical,
        "reacted": reacted, "reaction_rate": reacted / episodes,
        "reaction_time_mean_s": mean, "reaction_time_mean_lo_s": lo,
        "reaction_time_mean_hi_s": hi,
        "reaction_time_p50_s": mean, "reaction_time_p50_lo_s": lo,
        "reaction_time_p50_hi_s": hi,
        "reaction_time_p95_s": hi, "reaction_time_p95_lo_s": lo, "reaction_time_p95_hi_s": hi,
        "reaction_wait_mean_s": parts[0], "reaction_notice_mean_s": parts[1],
        "reaction_compute_mean_s": parts[2],
        "braked": reacted, "brake_onset_p50_s": mean + 0.5, "brake_onset_p50_lo_s": lo + 0.5,
        "brake_onset_p50_hi_s": hi + 0.5,
        "collisions": round(rate * episodes), "collision_rate": rate,
        "collision_rate_lo": rate_lo, "collision_rate_hi": rate_hi,
        "min_ttc_p50_s": 2.0 - extra, "min_ttc_p50_lo_s": 1.5 - extra,
        "min_ttc_p50_hi_s": 2.5 - extra,
        "min_gap_p50_m": 8.0, "min_gap_p50_lo_m": 7.0, "min_gap_p50_hi_m": 9.0,
        "progress_mean_m": 150.0 - 50 * extra, "progress_mean_lo_m": 140.0 - 50 * extra,
        "progress_mean_hi_m": 160.0 - 50 * extra,
        "jerk_mean_mps3": 3.0, "jerk_mean_lo_mps3": 2.5, "jerk_mean_hi_mps3": 3.5,
        "peak_decel_mean_mps2": 7.0, "decisions": 1000,
        "latency_p50_s": (0.02 if stack == "staged" else 0.005) + extra,
        "latency_p99_s": (0.04 if stack == "staged" else 0.008) + extra,
        "stack_latency_p50_s": 0.02 if stack == "staged" else 0.005,
        "stack_latency_p99_s": 0.04 if stack == "staged" else 0.008,
        "overrun_rate": 1.0 if extra >= 0.1 else 0.0, "dropped_frames_mean": 0.0,
    }


def make_summary() -> pd.DataFrame:
    """staged and cnn on lead-brake: lockstep at 0, realtime at +0, +100, +200 ms.

    - realtime +0: cnn 0.41 s [0.38, 0.45] (9/10 reacted), staged 0.62 s [0.58, 0.66]:
      cnn fastest by 210 ms, intervals apart.
    - collisions, realtime: staged 0% [0, 28%] at +0, 10% [2, 40%] at +100 (not above
      28%), 50% [24, 76%] at +200 (above): from +200 ms. cnn 10% [2, 40%] at +0, 30%
      [11, 60%] at +100 and +200 (never above 40%): stayed within up to +200 ms.
    """
    rows = [
        summary_row("staged", "lead-brake", "lockstep", 0.0, (0.55, 0.5, 0.6),
                    parts=(0.05, 0.5, 0.0)),
        summary_row("staged", "lead-brake", "realtime", 0.0, (0.62, 0.58, 0.66),
                    parts=(0.05, 0.5, 0.07)),
        summary_row("staged", "lead-brake", "realtime", 0.1, (0.74, 0.70, 0.79),
                    collision=(0.1, 0.02, 0.40)),
        summary_row("staged", "lead-brake", "realtime", 0.2, (0.85, 0.80, 0.90),
                    collision=(0.5, 0.24, 0.76)),
        summary_row("cnn", "lead-brake", "lockstep", 0.0, (0.40, 0.37, 0.44)),
        summary_row("cnn", "lead-brake", "realtime", 0.0, (0.41, 0.38, 0.45), reacted=9,
                    collision=(0.1, 0.02, 0.40), parts=(0.05, 0.35, 0.01)),
        summary_row("cnn", "lead-brake", "realtime", 0.1, (0.52, 0.48, 0.56),
                    collision=(0.3, 0.11, 0.60)),
        summary_row("cnn", "lead-brake", "realtime", 0.2, (0.63, 0.58, 0.68),
                    collision=(0.3, 0.11, 0.60)),
    ]
    return pd.DataFrame(rows)


def make_episodes(summary: pd.DataFrame) -> pd.DataFrame:
    rng = np.random.default_rng(0)
    rows = []
    for group in summary.itertuples():
        for seed in range(group.episodes):
            reacted = seed < group.reacted
            reaction = group.reaction_time_mean_s + rng.normal(0, 0.03) if reacted else NAN
            rows.append({"scenario": group.scenario, "stack": group.stack, "seed": seed,
                         "mode": group.mode, "extra_latency_s": group.extra_latency_s,
                         "hazard_onset_s": 3.0, "critical": seed < group.critical_episodes,
                         "reaction_time_s": reaction, "brake_onset_s": reaction + 0.5,
                         "collided": seed < group.collisions, "min_ttc_s": 2.0,
                         "progress_m": 150.0})
    return pd.DataFrame(rows)


def make_decisions() -> pd.DataFrame:
    """staged: perception 10, 12, 14 ms (median 12), tracking 1, planning 5, control 0.5;
    cnn: policy 4, 5, 6 ms (median 5). At +100 ms an "extra" stage that must not count."""
    rows = []
    for i, perception in enumerate((0.010, 0.012, 0.014)):
        stages = {"latency_perception_s": perception, "latency_tracking_s": 0.001,
                  "latency_planning_s": 0.005, "latency_control_s": 0.0005}
        rows.append({"stack": "staged", "scenario": "lead-brake", "mode": "realtime",
                     "extra_latency_s": 0.0, "seed": 0, "tick": i, "t_s": i / 10,
                     "latency_s": sum(stages.values()), "overrun": False, "dropped_after": 0,
                     **stages})
    for i, policy in enumerate((0.004, 0.005, 0.006)):
        rows.append({"stack": "cnn", "scenario": "lead-brake", "mode": "realtime",
                     "extra_latency_s": 0.0, "seed": 0, "tick": i, "t_s": i / 10,
                     "latency_s": policy, "overrun": False, "dropped_after": 0,
                     "latency_policy_s": policy})
        rows.append({"stack": "cnn", "scenario": "lead-brake", "mode": "realtime",
                     "extra_latency_s": 0.1, "seed": 0, "tick": i, "t_s": i / 10,
                     "latency_s": policy + 0.1, "overrun": True, "dropped_after": 1,
                     "latency_policy_s": policy, "latency_extra_s": 0.1})
    return pd.DataFrame(rows)


@pytest.fixture
def compare_dir(tmp_path):
    summary = make_summary()
    summary.to_csv(tmp_path / "summary.csv", index=False)
    make_episodes(summary).to_csv(tmp_path / "episodes.csv", index=False)
    make_decisions().to_csv(tmp_path / "decisions.csv", index=False)
    return tmp_path


def test_fastest_names_the_winner_with_numbers_computed_by_hand():
    (sentence,) = fastest(make_summary())
    assert sentence == (
        "lead-brake: cnn reacted fastest (realtime, its own latency): mean 410 ms [380, 450] "
        "over 9 of 10 critical episodes, 210 ms faster than staged (620 ms [580, 660]); the "
        "intervals do not overlap.")


def test_fastest_says_when_the_intervals_overlap():
    summary = make_summary()
    staged = (summary["stack"] == "staged") & (summary["mode"] == "realtime") \
        & (summary["extra_latency_s"] == 0)
    summary.loc[staged, ["reaction_time_mean_s", "reaction_time_mean_lo_s"]] = [0.43, 0.40]
    (sentence,) = fastest(summary)
    assert "20 ms faster than staged (430 ms [400, 660])" in sentence
    assert sentence.endswith("the intervals overlap: these episodes do not separate the two.")


def test_latency_cost_finds_the_first_extra_above_the_zero_extra_interval():
    costs = {cost.stack: cost for cost in latency_cost(make_summary())}
    assert costs["staged"].extra_s == pytest.approx(0.2)       # 10% at +100 is not > 28%
    assert costs["staged"].rate == 0.5 and costs["staged"].base_high == 0.28
    assert costs["cnn"].extra_s is None and costs["cnn"].max_extra_s == pytest.approx(0.2)
    sentences = summary_sentences(make_summary())
    assert sentences[0] == ("Critical episodes (all stacks, modes and latencies): lead-brake 80 "
                            "of 80. Rates are over these; the others are counted in the table, "
                            "not in the rates.")
    assert sentences[2] == ("staged: the collision rate rose above its zero-extra 95% interval "
                            "from +200 ms on lead-brake (50% [24%, 76%] against 0% [0%, 28%] "
                            "at +0 ms).")
    assert sentences[3] == ("cnn: the collision rate stayed within its zero-extra 95% interval "
                            "up to +200 ms on lead-brake.")


def test_headline_rows_one_per_stack_scenario_mode_at_extra_zero():
    rows = headline_rows(make_summary(), ["staged", "cnn"])
    assert [r[:3] for r in rows] == [("staged", "lead-brake", "lockstep"),
                                     ("staged", "lead-brake", "realtime"),
                                     ("cnn", "lead-brake", "lockstep"),
                                     ("cnn", "lead-brake", "realtime")]
    cnn_realtime = dict(zip(HEADLINE_HEADER, rows[3]))
    assert cnn_realtime["critical"] == "10 of 10" and cnn_realtime["reacted"] == "9/10"
    assert cnn_realtime["reaction mean [ms] (95% CI)"] == "410 [380, 450]"
    assert cnn_realtime["reaction p50 [ms]"] == "410"
    assert cnn_realtime["wait / notice / compute [ms]"] == "50 / 350 / 10"
    assert cnn_realtime["brake onset p50 [ms] (95% CI)"] == "910 [880, 950]"
    assert cnn_realtime["collisions (95% CI)"] == "10% [2%, 40%]"
    assert cnn_realtime["latency p50 / p99 [ms]"] == "5.0 / 8.0"


def test_decision_rows_mean_age_and_rate_per_stack_and_mode_at_extra_zero():
    summary = make_summary()
    summary["decision_age_mean_ms"] = [110.0 if e == 0 else 999.0
                                       for e in summary["extra_latency_s"]]
    summary["decisions_per_s"] = [10.0 if s == "cnn" else 5.0 for s in summary["stack"]]
    rows = decision_rows(summary, ["staged", "cnn"])
    assert rows == [("staged", "lockstep", "110.0", "5.00"),
                    ("staged", "realtime", "110.0", "5.00"),
                    ("cnn", "lockstep", "110.0", "10.00"), ("cnn", "realtime", "110.0", "10.00")]
    assert dict(zip(DECISION_HEADER, rows[0]))["decisions/s"] == "5.00"
    assert decision_rows(make_summary(), ["staged"]) == []   # older summary.csv


def test_stage_table_medians_by_hand_without_the_extra_stage():
    medians, totals = stage_table(make_decisions())
    assert medians.loc["staged", "perception"] == pytest.approx(0.012)
    assert medians.loc["staged", "planning"] == pytest.approx(0.005)
    assert medians.loc["cnn", "policy"] == pytest.approx(0.005)
    assert np.isnan(medians.loc["cnn", "perception"])
    assert "extra" not in medians.columns
    cnn = totals.set_index("stack").loc["cnn"]
    assert cnn["p50"] == pytest.approx(0.005)                  # extra-0 decisions only


def test_write_report_embeds_the_figures_and_the_words(compare_dir):
    files = write_report(compare_dir)
    page = files.html.read_text()
    uris = re.findall(r"src='data:image/png;base64,([A-Za-z0-9+/=]+)'", page)
    assert len(uris) == len(files.images) == 9
    assert all(base64.b64decode(uri)[:8] == b"\x89PNG\r\n\x1a\n" for uri in uris)
    assert "cnn reacted fastest (realtime, its own latency): mean 410 ms [380, 450]" in page
    assert "210 ms faster than staged" in page
    assert "from +200 ms on lead-brake" in page
    assert "<table>" in page and "<td>410 [380, 450]</td>" in page
    assert "What the numbers mean" in page and "Critical episode" in page
    markdown = files.markdown.read_text()
    for image in files.images:
        assert image.parent == compare_dir and image.read_bytes()[:4] == b"\x89PNG"
        assert f"]({image.name})" in markdown
    assert "| cnn | lead-brake | realtime | 10 of 10 | 9/10 | 410 [380, 450] |" in markdown
    # readable without the CSVs: nothing in the page points at them
    assert "summary.csv" not in page and "episodes.csv" not in page


def test_report_without_decisions_notes_what_is_missing(compare_dir):
    (compare_dir / "decisions.csv").unlink()
    videos = compare_dir / "videos"
    videos.mkdir()
    (videos / "staged_lead-brake_realtime_seed0.mp4").write_bytes(b"")
    files = write_report(compare_dir)
    page = files.html.read_text()
    assert "Latency CDF: needs decisions.csv" in page
    assert "videos/staged_lead-brake_realtime_seed0.mp4" in page
    assert len(files.images) == 8                               # no CDF


def test_missing_tables_are_a_clear_error(tmp_path):
    with pytest.raises(FileNotFoundError, match="episodes.csv"):
        write_report(tmp_path)


def test_no_critical_episode_is_said_instead_of_empty_rates(compare_dir):
    summary = make_summary()
    cnn = summary["stack"] == "cnn"
    summary.loc[cnn, ["critical_episodes", "rated_episodes", "reacted", "braked"]] = 0
    summary.loc[cnn, "noncritical_episodes"] = 10
    nan_columns = [c for c in summary.columns if c.startswith(("reaction_time", "collision_rate",
                                                                "brake_onset"))]
    summary.loc[cnn, nan_columns] = NAN
    (sentence,) = criticality_sentences(summary)
    assert sentence.startswith("Critical episodes (all stacks, modes and latencies): "
                               "lead-brake 40 of 80.")
    none = summary[~cnn].assign(critical_episodes=0, rated_episodes=0)
    assert criticality_sentences(none) == [
        "No episode of lead-brake (0 of 40) was critical: no collision rate, reaction or "
        "brake-onset statistic is given for it; the table counts the episodes as "
        "non-critical."]
    assert fastest(none) == [] and latency_cost(none) == []
    cnn_realtime = dict(zip(HEADLINE_HEADER, headline_rows(summary, ["staged", "cnn"])[3]))
    assert cnn_realtime["critical"] == "0 of 10"
    assert cnn_realtime["reacted"] == cnn_realtime["collisions (95% CI)"] == NO_CRITICAL
    assert cnn_realtime["latency p50 / p99 [ms]"] == "5.0 / 8.0"      # compute: still there


def test_summary_without_criticality_columns_is_rated_over_all_and_says_so():
    old = make_summary().drop(columns=["rates_over", "critical_episodes",
                                       "noncritical_episodes", "rated_episodes"])
    sentences = summary_sentences(old)
    assert sentences[0] == ("lead-brake: the episodes carry no criticality (a run from before "
                            "it was recorded), so rates are over all episodes.")
    assert "over 9 of 10 episodes" in sentences[1]
    assert dict(zip(HEADLINE_HEADER, headline_rows(old)[0]))["critical"] == "not recorded"


def test_figures_are_small_multiples_that_fit_the_page(compare_dir):
    """Five hazard scenarios: 3 panels a row (2 rows), at most PAGE_WIDTH_IN wide, each
    reaction panel with the human band and an axis label in seconds."""
    summary = pd.concat([make_summary().assign(scenario=name) for name in
                         ("lead-brake", "cut-in", "stopped-vehicle", "s4", "s5")])
    episodes = make_episodes(summary)
    episodes.loc[episodes["seed"] == 9, "critical"] = False            # one left out a cell
    summary.to_csv(compare_dir / "summary.csv", index=False)
    episodes.to_csv(compare_dir / "episodes.csv", index=False)
    figures, notes = build_figures(read_tables(compare_dir))
    assert not notes
    dpi = plots.PNG_DPI
    for figure in figures:
        width, height = (int.from_bytes(figure.png[16:20], "big"),
                         int.from_bytes(figure.png[20:24], "big"))
        assert width <= (plots.PAGE_WIDTH_IN + 0.3) * dpi, figure.name
        assert height >= 0.3 * width, figure.name                     # not a strip
    tables = read_tables(compare_dir)
    stacks, scenarios = ["staged", "cnn"], list(dict.fromkeys(summary["scenario"]))
    colors = plots.stack_colors(stacks)
    for column, label in (("reaction_time_s", "reaction time after the onset [s]"),
                          ("brake_onset_s", "brake onset after the onset [s]")):
        figure = plots.episode_distribution(tables.episodes, stacks, scenarios, colors, column,
                                            label, rated="rated")
        panels = [axis for axis in figure.axes if axis.get_visible()]
        assert len(panels) == 5
        assert {axis.get_subplotspec().get_gridspec().ncols for axis in panels} == {3}
        for axis in panels:
            bands = [p.get_x() for p in axis.patches if hasattr(p, "get_x")] + [
                tuple(np.round(p.get_xy()[[0, 2], 0], 6)) for p in axis.patches
                if not hasattr(p, "get_x")]
            assert (0.7, 1.5) in bands or 0.7 in bands, bands
        assert [axis.get_xlabel() for axis in panels] == ["", "", label, label, label]
        legend = [t.get_text() for t in figure.legends[0].get_texts()]
        assert "human drivers 0.7-1.5 s (Green 2000)" in legend
        assert "not critical (left out)" in legend
        plots.plt.close(figure)


# ----------------------------------------------------------------------------- executions


def two_executions() -> pd.DataFrame:
    """staged sequential and pipelined, and cnn, on lead-brake, realtime, +0 and +100 ms.

    - +0: staged 0.10 s [0.08, 0.12] both executions; cnn 0.40 s [0.36, 0.44]: staged
      fastest, 300 ms faster than cnn (its own pipelined twin is no rival).
    - +100 ms: sequential 0.25 [0.23, 0.27], pipelined 0.20 [0.18, 0.22]: apart, pipelined
      faster by 50 ms; +0: overlap.
    """
    rows = [
        {**summary_row("staged", "lead-brake", "realtime", 0.0, (0.10, 0.08, 0.12)),
         "execution": "sequential"},
        {**summary_row("staged", "lead-brake", "realtime", 0.1, (0.25, 0.23, 0.27)),
         "execution": "sequential"},
        {**summary_row("staged", "lead-brake", "realtime", 0.0, (0.10, 0.08, 0.12)),
         "execution": "pipelined"},
        {**summary_row("staged", "lead-brake", "realtime", 0.1, (0.20, 0.18, 0.22)),
         "execution": "pipelined"},
        {**summary_row("cnn", "lead-brake", "realtime", 0.0, (0.40, 0.36, 0.44)),
         "execution": "sequential"},
    ]
    summary = pd.DataFrame(rows)
    return labelled(summary, execution_labels(summary))


def test_labels_and_their_base_stack():
    summary = two_executions()
    assert list(summary["stack"]) == ["staged sequential"] * 2 + ["staged pipelined"] * 2 + [
        "cnn"]
    assert [base_stack(row) for _, row in summary.iterrows()] == ["staged"] * 4 + ["cnn"]


def test_fastest_is_compared_with_another_stack():
    (sentence,) = fastest(two_executions())
    assert sentence.startswith("lead-brake: staged sequential reacted fastest (realtime, "
                               "its own latency): mean 100 ms [80, 120]")
    assert "300 ms faster than cnn (400 ms [360, 440]); the intervals do not overlap." \
        in sentence


def test_execution_sentence_says_where_they_separate_and_by_how_much():
    assert execution_sentences(two_executions()) == [
        "staged, pipelined against sequential: reacted faster pipelined on lead-brake "
        "+100 ms by 50 ms (200 against 250 ms); the reaction-time intervals overlap in the "
        "other 1 of 2 scenario x extra latency cells."]
    summary = two_executions()
    summary = summary[summary["extra_latency_s"] == 0]
    assert execution_sentences(summary) == [
        "staged, pipelined against sequential: the reaction-time intervals overlap in all "
        "1 scenario x extra latency cells."]
    assert execution_sentences(summary.drop(columns="execution")) == []
    assert any(s.startswith("staged, pipelined against sequential")
               for s in summary_sentences(two_executions()))


def test_stage_breakdown_names_a_budget_far_off_its_scale():
    """2 ms of planning against a 100 ms budget: the line would flatten the bar, so the
    title names the budget; 50 ms against 100 ms: the line is drawn at 100 ms."""
    small = plots.stage_breakdown(pd.DataFrame({"planning": [0.002]}, index=["staged"]),
                                  ["staged"], 0.1)
    axis = small.axes[0]
    assert axis.get_title() == "Per-stage latency of a decision (budget 100 ms, off the scale)"
    assert axis.lines == [] or all(line.get_label() != "budget" for line in axis.lines)
    large = plots.stage_breakdown(pd.DataFrame({"planning": [0.05]}, index=["staged"]),
                                  ["staged"], 0.1)
    axis = large.axes[0]
    assert axis.get_title() == "Per-stage latency of a decision"
    (budget,) = [line for line in axis.lines if line.get_label() == "budget"]
    assert list(budget.get_ydata()) == [100.0, 100.0]


def test_latency_cost_shows_a_decimal_where_whole_percent_would_tie():
    """8/125 = 6.4 % rose above the 5.6 % bound of 2/125: whole percent prints 6 and 6."""
    from reflexdrive.report.sentences import LatencyCost, latency_cost_sentences

    cost = LatencyCost("staged", "cut-in", 0.016, 0.004, 0.056, 0.2, 0.064, 0.033, 0.121,
                       0.3)
    (sentence,) = latency_cost_sentences([cost])
    assert "from +200 ms on cut-in (6.4% [3.3%, 12.1%] against 1.6% [0.4%, 5.6%] at +0 ms)" \
        in sentence
    clear = LatencyCost("staged", "cut-in", 0.0, 0.0, 0.03, 0.1, 0.36, 0.28, 0.45, 0.3)
    assert "(36% [28%, 45%] against 0% [0%, 3%] at +0 ms)" in latency_cost_sentences([clear])[0]
