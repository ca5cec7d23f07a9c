"""Write data/quick-reference.pdf, the sample PDF (English pages and one Chinese page).

Run once by a developer; the PDF is committed, so users and tests need neither
this script nor the CJK font it uses (Debian: ``apt-get install fonts-wqy-microhei``).

    .venv/bin/python scripts/make_sample_pdf.py [output.pdf]
"""

from __future__ import annotations

import sys
from pathlib import Path

from datetime import datetime, timezone

from fpdf import FPDF

FONT = "/usr/share/fonts/truetype/wqy/wqy-microhei.ttc"

PAGES = [
    (
        "kbqa Quick Reference",
        [
            "This quick reference lists the commands and defaults of kbqa, the private document "
            "question-answering application.",
            "Commands: `kb ingest <folder>` indexes a folder. `kb ask \"question\"` answers a question "
            "in the terminal. `kb search \"question\"` shows the passages retrieval finds without "
            "generating an answer. `kb status` lists the indexed documents. `kb ui` starts the web "
            "interface.",
            "Exit codes: 0 means success, 2 means bad settings or input, 3 means the index cannot "
            "be used, and 130 means the command was interrupted.",
        ],
    ),
    (
        "Defaults",
        [
            "Chunks are 256 embedder tokens long and neighbouring chunks overlap by 32 tokens. "
            "Change this with KB_CHUNK_TOKENS and KB_CHUNK_OVERLAP.",
            "The first retrieval stage returns 40 candidate passages. The reranker keeps the best "
            "5 passages for the prompt.",
            "The default language model is Qwen2.5-Coder-1.5B-Instruct, quantized to 4 bits "
            "(Q4_K_M). Its context window is set to 4096 tokens and answers are limited to 512 tokens.",
            "The web interface listens on port 8501 of 127.0.0.1.",
        ],
    ),
    (
        "中文速查",
        [
            "kbqa 的索引保存在 .kb 文件夹中。每个知识库都有自己的文件夹，里面有向量索引、段落元数据和带版本号的清单文件。",
            "索引文件不使用 pickle 格式，因此打开索引不会执行任何代码。",
            "如果更换了嵌入模型，旧的索引将无法打开，程序会给出明确的错误提示，而不是返回错误的结果。",
        ],
    ),
]


def build(output: Path) -> None:
    pdf = FPDF()
    pdf.add_font("wqy", "", FONT, collection_font_number=0)
    pdf.set_title("kbqa Quick Reference")
    pdf.set_creation_date(datetime(2026, 11, 23, tzinfo=timezone.utc))  # reproducible bytes
    for title, paragraphs in PAGES:
        pdf.add_page()
        pdf.set_font("wqy", size=18)
        pdf.multi_cell(0, 10, title)
        pdf.ln(4)
        pdf.set_font("wqy", size=11)
        for paragraph in paragraphs:
            pdf.multi_cell(0, 6.5, paragraph)
            pdf.ln(3)
    pdf.output(str(output))


if __name__ == "__main__":
    build(Path(sys.argv[1]) if len(sys.argv) > 1 else Path(__file__).resolve().parent.parent / "data" / "quick-reference.pdf")
