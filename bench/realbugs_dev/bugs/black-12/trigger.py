import os
import sentry_sdk
sentry_sdk.init(dsn=os.environ["SENTRY_DSN"], release=os.environ["SENTRY_RELEASE"],
                include_local_variables=True, default_integrations=True)

# A notebook/code-cell formatter: user code cells are run through black before saving.
import black

CELLS = [
    "import pandas as pd\ndf = pd.read_csv('events.csv')\n",
    "score = lambda row, weights={'clicks': 2, 'views': 1}: sum(weights[k] * row[k] for k in weights)\n",
]


def format_cell(code: str, line_length: int = 88) -> str:
    return black.format_str(code, line_length=line_length)


for number, cell in enumerate(CELLS, 1):
    print(f"# cell {number}")
    print(format_cell(cell))
