from __future__ import annotations

from pathlib import Path

from mailunblock.plugin.demo import run_demo


def test_demo_tells_the_whole_story_and_exits_zero(tmp_path: Path) -> None:
    lines: list[str] = []
    assert run_demo(lines.append, tmp_path) == 0
    story = "\n".join(lines)
    assert "EMULATORS of Jira and Microsoft 365" in story
    assert "Approval by Adele Vance ignored: the reporter cannot approve their own request." in story
    assert "Approval by Mallory Stone ignored: Mallory Stone is not an approver." in story
    assert "entre " in story and "(heure de Paris)" in story  # the French ETA window
    assert "(Eastern Time)" in story
    summary = story.split("Summary (sandbox time)")[1]
    rows = {line.split()[0]: line.split() for line in summary.splitlines() if line.strip().startswith("HELP-")}
    assert rows["HELP-1"][1:5] == ["adele.vance@contoso.com", "resolved", "1", "1"]
    assert rows["HELP-2"][1:5] == ["chloe.dupont@fabrikam.fr", "resolved", "1", "1"]
    assert rows["HELP-3"][1:5] == ["lidia.holloway@contoso.com", "resolved", "1", "1"]
    assert rows["HELP-4"][2] == rows["HELP-5"][2] == "refused"
    assert rows["HELP-3"][0] == "HELP-3" and "the account lidia.holloway@contoso.com" in story  # a colleague's
    assert rows["HELP-7"][2] == "not_listed" and rows["HELP-7"][3:5] == ["0", "0"]  # not listed: no reset
    assert "none of the 3 new passwords appears in any" in story
    report = tmp_path / "sla-report.html"
    assert f"SLA report (charts, breaches, per approver): {report}" in story
    page = report.read_text(encoding="utf-8")
    assert page.count('<svg id="chart-') == 4 and "HELP-1" in page
