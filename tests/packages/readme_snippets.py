"""Writes the code blocks of the README's "Use in your tests" section out as files, so the test
command runs exactly what the README shows:

    python3 readme_snippets.py README.md PYTEST_DIR NODE_DIR

PYTEST_DIR gets test_readme.py (the pytest example) and readme_server.py (the context-manager
example); NODE_DIR gets readme.test.js (the node:test example).
"""

import re
import sys
from pathlib import Path

readme, pytest_dir, node_dir = (Path(a) for a in sys.argv[1:4])
text = readme.read_text()
start = text.index("\n## Use in your tests\n")
end = text.index("\n## ", start + 1)
blocks = re.findall(r"^```(\w+)\n(.*?)^```$", text[start:end], re.M | re.S)
python = [body for lang, body in blocks if lang == "python"]
js = [body for lang, body in blocks if lang == "js"]
if len(python) != 2 or len(js) != 1:
    sys.exit(f"readme_snippets: expected 2 python blocks and 1 js block, found {len(python)} and {len(js)}")
(pytest_dir / "test_readme.py").write_text(python[0])
(pytest_dir / "readme_server.py").write_text(python[1])
(node_dir / "readme.test.js").write_text(js[0])
