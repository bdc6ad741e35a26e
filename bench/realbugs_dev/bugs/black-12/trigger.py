import os
import sentry_sdk

sentry_sdk.init(
    dsn=os.environ["SENTRY_DSN"],
    release=os.environ["SENTRY_RELEASE"],
    include_local_variables=True,
    default_integrations=True,
)

# A notebook/code-cell formatter: user code cells are run through black before saving.
# A cell that fails to format is reported and saved unformatted; the other cells go on.
import black

CELLS = [
    "score = lambda row, weights={'clicks': 2, 'views': 1}: sum(weights[k] * row[k] for k in weights)\n",
    "df['label'] = df['code'].map(lambda c, names={1: 'low', 2: 'high'}: names.get(c, 'n/a'))\n",
    "normalize = lambda s, table={ord('-'): '_', ord(' '): '_'}: s.translate(table).lower()\n"
    "columns = [normalize(c) for c in df.columns]\n",
    "window = lambda xs, part=xs_default[1:-1]: xs[part]\n",
]


def format_cell(code: str, line_length: int = 88) -> str:
    return black.format_str(code, line_length=line_length)


last_error = None
for number, cell in enumerate(CELLS, 1):
    try:
        formatted = format_cell(cell)
    except Exception as exc:
        sentry_sdk.capture_exception()
        last_error = exc
        formatted = cell
    print(f"# cell {number}")
    print(formatted)

sentry_sdk.flush()
if last_error is not None:
    raise last_error
