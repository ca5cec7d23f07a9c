"""Only what the documents say reaches the user: the default model, real collections made in the test.

- a question about a document that exists, asking for what it does not state (a cost the report
  never gives), is declined: "not in the documents", the draft kept aside, nothing cited;
- the same document still answers what it does state;
- a question naming a year is answered from that year's page, not from another year's page that
  gives the same measure;
- a question asking which documents say something is answered with the documents named, one line
  each with its citation, and how many were looked at.
"""

from __future__ import annotations

import re

import pytest

from tests.conftest import write

pytestmark = pytest.mark.answer_quality  # what the default model answers is what is tested

REPORT = """# Accident report AR-2024-117

## Summary
On 12 March 2024 a Cessna 172S, registration N4471K, overran runway 27 at Millbrook on landing in heavy rain.
The pilot and the passenger were not injured. The aircraft was substantially damaged: the nose gear
collapsed and the propeller struck the ground.

## Findings
The runway was wet and the aircraft touched down 600 metres beyond the threshold, too fast.
The pilot did not go around. The investigation found no mechanical fault.
"""

PAGE = """<!DOCTYPE html><html lang="zh"><head><meta charset="utf-8"><title>{year}中法学院热点问题解答</title></head>
<body><h1>{year}中法学院热点问题解答</h1><p>发布时间：{year}-07-10</p>
<p>在{exam}年全国高校法语专业四级考试中，中法学院{cohort}级学生通过率达{passed}%，优秀率达{excellent}%。</p>
<p>中法学院开设法语、金融学和国民经济管理三个专业，采用汉语、法语、英语三语教学。</p></body></html>
"""

RELEASES = {
    "release-1.1.md": "# Pumpkin 1.1 Release Notes\n\nRelease date: 2024-02-01\n\n## New features\n\n"
                      "- The audit log now records every login and every export.\n- Exports can be scheduled.\n",
    "release-1.2.md": "# Pumpkin 1.2 Release Notes\n\nRelease date: 2024-05-01\n\n## New features\n\n"
                      "- Dark mode for the dashboard.\n- Faster CSV import.\n",
    "release-1.3.md": "# Pumpkin 1.3 Release Notes\n\nRelease date: 2024-08-01\n\n## Improvements\n\n"
                      "- The audit log can be exported as JSON lines.\n- Charts load twice as fast.\n",
    "release-1.4.md": "# Pumpkin 1.4 Release Notes\n\nRelease date: 2024-11-01\n\n## Fixes\n\n"
                      "- Fixed a crash when a dashboard had no widgets.\n- Fixed sorting of dates.\n",
}


@pytest.fixture
def report_pipeline(make_pipeline, tmp_path):
    docs = tmp_path / "docs"
    write(docs / "ar-2024-117.md", REPORT)
    pipeline = make_pipeline(documents_dir=docs)
    pipeline.ingest(docs, progress=False)
    return pipeline


def test_a_cost_the_report_never_states_is_declined_not_invented(report_pipeline):
    answer = report_pipeline.ask("How much did the repairs to N4471K cost?")
    assert answer.abstained, answer.text
    assert not answer.supported and not answer.citations
    assert answer.sources  # the closest passages are shown to judge for oneself
    assert not re.search(r"\$\s?\d", answer.text)  # no invented amount reaches the user


def test_what_the_report_does_state_is_still_answered(report_pipeline):
    answer = report_pipeline.ask("What damage did the aircraft N4471K suffer?")
    assert not answer.abstained, answer.text
    assert answer.supported and answer.citations
    assert re.search(r"nose gear|propeller|substantially damaged", answer.text, re.IGNORECASE)


def test_a_question_naming_a_year_is_answered_from_that_years_page(make_pipeline, tmp_path):
    docs = tmp_path / "pages"
    write(docs / "page-1.html", PAGE.format(year=2020, exam=2019, cohort=2017, passed=96, excellent=48))
    write(docs / "page-2.html", PAGE.format(year=2022, exam=2021, cohort=2019, passed=93, excellent=59))
    pipeline = make_pipeline(documents_dir=docs)
    pipeline.ingest(docs, progress=False)
    answer = pipeline.ask("2019年法语专业四级考试，中法学院学生的优秀率是多少？")
    assert "59" not in answer.text  # the 2021 exam's rate, on the page whose class is "2019级"
    assert answer.abstained or "48" in answer.text, answer.text


def test_which_documents_are_named_one_line_each_with_how_many_were_looked_at(make_pipeline, tmp_path):
    docs = tmp_path / "releases"
    for name, text in RELEASES.items():
        write(docs / name, text)
    pipeline = make_pipeline(documents_dir=docs)
    pipeline.ingest(docs, progress=False)
    answer = pipeline.ask("Which release notes mention the audit log?")
    assert not answer.abstained, answer.text
    lines = [line for line in answer.text.splitlines() if line.startswith("- ")]
    named = " ".join(lines)
    assert "1.1" in named and "1.3" in named, answer.text
    assert "1.2" not in named and "1.4" not in named, answer.text
    assert re.match(r"\d+ of the \d+ documents looked at", answer.text)
    assert all(re.search(r"\[\d+\]", line) for line in lines)  # each document's line cites its passage
    assert {c.source for c in answer.citations} == {"release-1.1.md", "release-1.3.md"}
