// PromQL read with the Prometheus project's own grammar (@prometheus-io/lezer-promql, what its web UI parses with):
// syntax errors, and which metrics and labels an expression uses.
import { parser } from '@prometheus-io/lezer-promql';

type SyntaxNode = ReturnType<typeof parser.parse>['topNode'];

export interface PromqlRefs {
  /** Syntax errors, each with the offending text; empty when the expression parses. */
  errors: string[];
  /** Every selector: its metric name and the label names its matchers use. */
  selectors: { metric: string; labels: string[] }[];
  /** Labels named in by/without/on/ignoring/group_left/group_right clauses. */
  grouping: string[];
  /** Whether the outermost operation aggregates (then only its `by` labels survive). */
  aggregated: boolean;
}

const SELECTOR_CHILDREN = new Set(['VectorSelector', 'MatrixSelector', 'SubqueryExpr']);

function text(expr: string, node: SyntaxNode): string {
  return expr.slice(node.from, node.to);
}

function unquote(s: string): string {
  return s.startsWith('"') || s.startsWith("'") ? (JSON.parse(s.startsWith("'") ? `"${s.slice(1, -1)}"` : s) as string) : s;
}

export function analyze(expr: string): PromqlRefs {
  const tree = parser.parse(expr);
  const refs: PromqlRefs = { errors: [], selectors: [], grouping: [], aggregated: false };
  const cursor = tree.cursor();
  do {
    const node = cursor.node;
    if (node.type.isError) refs.errors.push(`syntax error at ${node.from}: '${expr.slice(Math.max(0, node.from - 20), node.to + 20)}'`);
    switch (node.name) {
      case 'OffsetExpr': {
        // The server's parser only takes offset right after a selector or subquery; the editor grammar is laxer.
        const target = node.firstChild;
        if (!target || !SELECTOR_CHILDREN.has(target.name)) refs.errors.push(`offset must follow a selector or subquery: '${text(expr, node)}'`);
        break;
      }
      case 'VectorSelector': {
        const id = node.getChild('Identifier');
        const labels: string[] = [];
        let metric = id ? text(expr, id) : '';
        const matchers = node.getChild('LabelMatchers');
        for (const m of matchers ? [...matchers.getChildren('UnquotedLabelMatcher'), ...matchers.getChildren('QuotedLabelMatcher')] : []) {
          const nameNode = m.getChild('LabelName') ?? m.getChild('QuotedLabelName');
          if (!nameNode) continue; // a bare "metric_name" in braces
          const name = unquote(text(expr, nameNode));
          if (name === '__name__') metric = unquote(text(expr, m.getChild('StringLiteral', 'MatchOp')!));
          else labels.push(name);
        }
        refs.selectors.push({ metric, labels });
        break;
      }
      case 'GroupingLabels':
        for (const l of [...node.getChildren('LabelName'), ...node.getChildren('QuotedLabelName')]) refs.grouping.push(unquote(text(expr, l)));
        break;
      default:
        break;
    }
  } while (cursor.next());
  let top = tree.topNode.firstChild;
  while (top?.name === 'ParenExpr' || top?.name === 'BinaryExpr') top = top.firstChild;
  refs.aggregated = top?.name === 'AggregateExpr';
  return refs;
}
