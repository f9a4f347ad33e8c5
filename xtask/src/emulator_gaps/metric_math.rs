//! CloudWatch metric math, as pure functions: the expressions metric-math alarms use, parsed
//! and evaluated over time series (one value per period start, a period with no datapoint
//! absent), the way CloudWatch evaluates them.
//!
//! Supported: metric ids, numbers, `+ - * /`, unary `-`, comparisons `== != < <= > >=` and
//! `AND`/`&&`, `OR`/`||`, `NOT`/`!` (1 or 0), parentheses, `IF(cond, a[, b])`,
//! `FILL(m, value)`, and `MAX`/`MIN`/`SUM`/`AVG` of one series (a number over the whole
//! series) or of an array `[a, b, ...]` (per timestamp). As in CloudWatch, an operation on two
//! series keeps only the timestamps both have; `FILL` gives a value to every period of the
//! query's range; `IF` with no false branch leaves out the periods where the condition is 0.

use std::collections::BTreeMap;
use thiserror::Error;

#[derive(Debug, Clone, PartialEq, Error)]
pub enum MathError {
    #[error("metric math: {0}")]
    Syntax(String),
    #[error("metric math: unknown id or function {0}")]
    Unknown(String),
    #[error("metric math: {0}")]
    Arguments(String),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BinOp {
    Add,
    Sub,
    Mul,
    Div,
    Eq,
    Ne,
    Lt,
    Le,
    Gt,
    Ge,
    And,
    Or,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Func {
    If,
    Fill,
    Max,
    Min,
    Sum,
    Avg,
    Diff,
}

impl Func {
    fn parse(name: &str) -> Option<Func> {
        Some(match name.to_ascii_uppercase().as_str() {
            "IF" => Func::If,
            "FILL" => Func::Fill,
            "MAX" => Func::Max,
            "MIN" => Func::Min,
            "SUM" => Func::Sum,
            "AVG" => Func::Avg,
            "DIFF" => Func::Diff,
            _ => return None,
        })
    }
}

#[derive(Debug, Clone, PartialEq)]
pub enum Expr {
    Number(f64),
    Id(String),
    Neg(Box<Expr>),
    Not(Box<Expr>),
    Binary(BinOp, Box<Expr>, Box<Expr>),
    Call(Func, Vec<Expr>),
    Array(Vec<Expr>),
}

impl Expr {
    /// The ids the expression reads.
    pub fn ids(&self) -> Vec<&str> {
        let mut out = Vec::new();
        self.collect_ids(&mut out);
        out
    }

    fn collect_ids<'a>(&'a self, out: &mut Vec<&'a str>) {
        match self {
            Expr::Number(_) => {}
            Expr::Id(id) => out.push(id),
            Expr::Neg(e) | Expr::Not(e) => e.collect_ids(out),
            Expr::Binary(_, a, b) => {
                a.collect_ids(out);
                b.collect_ids(out);
            }
            Expr::Call(_, args) | Expr::Array(args) => {
                args.iter().for_each(|a| a.collect_ids(out));
            }
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
enum Token {
    Number(f64),
    Word(String),
    Op(&'static str),
}

fn tokens(text: &str) -> Result<Vec<Token>, MathError> {
    const OPS: [&str; 18] = [
        "==", "!=", "<=", ">=", "&&", "||", "<", ">", "+", "-", "*", "/", "(", ")", ",", "[", "]",
        "!",
    ];
    let mut out = Vec::new();
    let mut rest = text;
    while let Some(c) = rest.chars().next() {
        if c.is_whitespace() {
            rest = &rest[c.len_utf8()..];
        } else if c.is_ascii_digit() || c == '.' {
            let end = rest
                .find(|ch: char| !(ch.is_ascii_digit() || ch == '.'))
                .unwrap_or(rest.len());
            let number = rest[..end]
                .parse()
                .map_err(|_| MathError::Syntax(format!("bad number {:?}", &rest[..end])))?;
            out.push(Token::Number(number));
            rest = &rest[end..];
        } else if c.is_ascii_alphabetic() || c == '_' {
            let end = rest
                .find(|ch: char| !(ch.is_ascii_alphanumeric() || ch == '_'))
                .unwrap_or(rest.len());
            out.push(Token::Word(rest[..end].to_string()));
            rest = &rest[end..];
        } else if let Some(op) = OPS.iter().find(|op| rest.starts_with(**op)) {
            out.push(Token::Op(op));
            rest = &rest[op.len()..];
        } else {
            return Err(MathError::Syntax(format!("unexpected {c:?}")));
        }
    }
    Ok(out)
}

/// Parses a metric math expression.
pub fn parse(text: &str) -> Result<Expr, MathError> {
    let mut parser = Parser {
        tokens: tokens(text)?,
        at: 0,
    };
    let expr = parser.or()?;
    match parser.peek() {
        None => Ok(expr),
        Some(t) => Err(MathError::Syntax(format!("unexpected {t:?}"))),
    }
}

struct Parser {
    tokens: Vec<Token>,
    at: usize,
}

impl Parser {
    fn peek(&self) -> Option<&Token> {
        self.tokens.get(self.at)
    }

    fn next(&mut self) -> Option<Token> {
        let token = self.tokens.get(self.at).cloned();
        self.at += 1;
        token
    }

    fn op(&mut self, ops: &[&str]) -> Option<&'static str> {
        match self.peek() {
            Some(Token::Op(op)) if ops.contains(op) => {
                let op = *op;
                self.at += 1;
                Some(op)
            }
            _ => None,
        }
    }

    fn word(&mut self, word: &str) -> bool {
        match self.peek() {
            Some(Token::Word(w)) if w.eq_ignore_ascii_case(word) => {
                self.at += 1;
                true
            }
            _ => false,
        }
    }

    fn expect(&mut self, op: &str) -> Result<(), MathError> {
        match self.next() {
            Some(Token::Op(found)) if found == op => Ok(()),
            other => Err(MathError::Syntax(format!("expected {op}, found {other:?}"))),
        }
    }

    fn or(&mut self) -> Result<Expr, MathError> {
        let mut left = self.and()?;
        while self.op(&["||"]).is_some() || self.word("OR") {
            left = Expr::Binary(BinOp::Or, Box::new(left), Box::new(self.and()?));
        }
        Ok(left)
    }

    fn and(&mut self) -> Result<Expr, MathError> {
        let mut left = self.comparison()?;
        while self.op(&["&&"]).is_some() || self.word("AND") {
            left = Expr::Binary(BinOp::And, Box::new(left), Box::new(self.comparison()?));
        }
        Ok(left)
    }

    fn comparison(&mut self) -> Result<Expr, MathError> {
        let mut left = self.sum()?;
        while let Some(op) = self.op(&["==", "!=", "<=", ">=", "<", ">"]) {
            let op = match op {
                "==" => BinOp::Eq,
                "!=" => BinOp::Ne,
                "<=" => BinOp::Le,
                ">=" => BinOp::Ge,
                "<" => BinOp::Lt,
                _ => BinOp::Gt,
            };
            left = Expr::Binary(op, Box::new(left), Box::new(self.sum()?));
        }
        Ok(left)
    }

    fn sum(&mut self) -> Result<Expr, MathError> {
        let mut left = self.product()?;
        while let Some(op) = self.op(&["+", "-"]) {
            let op = if op == "+" { BinOp::Add } else { BinOp::Sub };
            left = Expr::Binary(op, Box::new(left), Box::new(self.product()?));
        }
        Ok(left)
    }

    fn product(&mut self) -> Result<Expr, MathError> {
        let mut left = self.unary()?;
        while let Some(op) = self.op(&["*", "/"]) {
            let op = if op == "*" { BinOp::Mul } else { BinOp::Div };
            left = Expr::Binary(op, Box::new(left), Box::new(self.unary()?));
        }
        Ok(left)
    }

    fn unary(&mut self) -> Result<Expr, MathError> {
        if self.op(&["-"]).is_some() {
            return Ok(Expr::Neg(Box::new(self.unary()?)));
        }
        if self.op(&["!"]).is_some() || self.word("NOT") {
            return Ok(Expr::Not(Box::new(self.unary()?)));
        }
        self.primary()
    }

    fn list(&mut self, close: &str) -> Result<Vec<Expr>, MathError> {
        let mut items = vec![self.or()?];
        while self.op(&[","]).is_some() {
            items.push(self.or()?);
        }
        self.expect(close)?;
        Ok(items)
    }

    fn primary(&mut self) -> Result<Expr, MathError> {
        match self.next() {
            Some(Token::Number(n)) => Ok(Expr::Number(n)),
            Some(Token::Op("(")) => {
                let inner = self.or()?;
                self.expect(")")?;
                Ok(inner)
            }
            Some(Token::Op("[")) => Ok(Expr::Array(self.list("]")?)),
            Some(Token::Word(word)) => {
                if self.op(&["("]).is_some() {
                    let func = Func::parse(&word).ok_or(MathError::Unknown(word))?;
                    Ok(Expr::Call(func, self.list(")")?))
                } else {
                    Ok(Expr::Id(word))
                }
            }
            other => Err(MathError::Syntax(format!("unexpected {other:?}"))),
        }
    }
}

/// A time series: period start (epoch s) to value.
pub type Series = BTreeMap<i64, f64>;

#[derive(Debug, Clone, PartialEq)]
enum Value {
    Scalar(f64),
    Series(Series),
    Array(Vec<Value>),
}

/// What an expression reads: the series of each id, and the period starts of the query's
/// range (the periods `FILL` fills).
pub struct Inputs<'a> {
    pub series: &'a BTreeMap<String, Series>,
    pub periods: &'a [i64],
}

/// Evaluates `expr` to a time series over `inputs.periods` (a number becomes a value in every
/// period).
pub fn evaluate(expr: &Expr, inputs: &Inputs) -> Result<Series, MathError> {
    match eval(expr, inputs)? {
        Value::Scalar(v) => Ok(inputs.periods.iter().map(|t| (*t, v)).collect()),
        Value::Series(s) => Ok(s),
        Value::Array(_) => Err(MathError::Arguments("an array is not a time series".into())),
    }
}

fn truth(v: bool) -> f64 {
    if v {
        1.0
    } else {
        0.0
    }
}

fn apply(op: BinOp, a: f64, b: f64) -> Option<f64> {
    let v = match op {
        BinOp::Add => a + b,
        BinOp::Sub => a - b,
        BinOp::Mul => a * b,
        // CloudWatch drops a datapoint divided by zero.
        BinOp::Div if b == 0.0 => return None,
        BinOp::Div => a / b,
        BinOp::Eq => truth(a == b),
        BinOp::Ne => truth(a != b),
        BinOp::Lt => truth(a < b),
        BinOp::Le => truth(a <= b),
        BinOp::Gt => truth(a > b),
        BinOp::Ge => truth(a >= b),
        BinOp::And => truth(a != 0.0 && b != 0.0),
        BinOp::Or => truth(a != 0.0 || b != 0.0),
    };
    v.is_finite().then_some(v)
}

/// The value at `t`: a number everywhere, a series where it has a datapoint.
fn at(value: &Value, t: i64) -> Option<f64> {
    match value {
        Value::Scalar(v) => Some(*v),
        Value::Series(s) => s.get(&t).copied(),
        Value::Array(_) => None,
    }
}

fn timestamps(value: &Value) -> Option<Vec<i64>> {
    match value {
        Value::Series(s) => Some(s.keys().copied().collect()),
        _ => None,
    }
}

fn binary(op: BinOp, a: &Value, b: &Value) -> Result<Value, MathError> {
    if let (Value::Scalar(x), Value::Scalar(y)) = (a, b) {
        return apply(op, *x, *y)
            .map(Value::Scalar)
            .ok_or_else(|| MathError::Arguments("division by zero".into()));
    }
    if matches!(a, Value::Array(_)) || matches!(b, Value::Array(_)) {
        return Err(MathError::Arguments("arithmetic on an array".into()));
    }
    // Series op series keeps the timestamps both have; series op number, the series'.
    let times = match (timestamps(a), timestamps(b)) {
        (Some(ta), Some(_)) => ta,
        (Some(t), None) | (None, Some(t)) => t,
        (None, None) => Vec::new(),
    };
    Ok(Value::Series(
        times
            .into_iter()
            .filter_map(|t| Some((t, apply(op, at(a, t)?, at(b, t)?)?)))
            .collect(),
    ))
}

fn map(value: Value, f: impl Fn(f64) -> f64) -> Result<Value, MathError> {
    match value {
        Value::Scalar(v) => Ok(Value::Scalar(f(v))),
        Value::Series(s) => Ok(Value::Series(
            s.into_iter().map(|(t, v)| (t, f(v))).collect(),
        )),
        Value::Array(_) => Err(MathError::Arguments("arithmetic on an array".into())),
    }
}

fn aggregate(func: Func, values: &[f64]) -> Option<f64> {
    if values.is_empty() {
        return None;
    }
    let sum: f64 = values.iter().sum();
    Some(match func {
        Func::Max => values.iter().copied().fold(f64::MIN, f64::max),
        Func::Min => values.iter().copied().fold(f64::MAX, f64::min),
        Func::Sum => sum,
        _ => sum / values.len() as f64,
    })
}

fn eval(expr: &Expr, inputs: &Inputs) -> Result<Value, MathError> {
    Ok(match expr {
        Expr::Number(n) => Value::Scalar(*n),
        Expr::Id(id) => Value::Series(
            inputs
                .series
                .get(id)
                .cloned()
                .ok_or_else(|| MathError::Unknown(id.clone()))?,
        ),
        Expr::Neg(e) => map(eval(e, inputs)?, |v| -v)?,
        Expr::Not(e) => map(eval(e, inputs)?, |v| truth(v == 0.0))?,
        Expr::Binary(op, a, b) => binary(*op, &eval(a, inputs)?, &eval(b, inputs)?)?,
        Expr::Array(items) => Value::Array(
            items
                .iter()
                .map(|e| eval(e, inputs))
                .collect::<Result<_, _>>()?,
        ),
        Expr::Call(func, args) => call(*func, args, inputs)?,
    })
}

fn call(func: Func, args: &[Expr], inputs: &Inputs) -> Result<Value, MathError> {
    let values: Vec<Value> = args
        .iter()
        .map(|e| eval(e, inputs))
        .collect::<Result<_, _>>()?;
    match (func, values.as_slice()) {
        (Func::If, [cond, yes, rest @ ..]) if rest.len() <= 1 => {
            let no = rest.first();
            let pick = |c: f64, t: i64| {
                if c != 0.0 {
                    at(yes, t)
                } else {
                    no.and_then(|n| at(n, t))
                }
            };
            Ok(match cond {
                Value::Scalar(c) if *c != 0.0 => yes.clone(),
                Value::Scalar(_) => no.cloned().unwrap_or(Value::Series(Series::new())),
                Value::Series(s) => Value::Series(
                    s.iter()
                        .filter_map(|(t, c)| Some((*t, pick(*c, *t)?)))
                        .collect(),
                ),
                Value::Array(_) => {
                    return Err(MathError::Arguments("IF of an array".into()));
                }
            })
        }
        (Func::Fill, [Value::Series(s), with]) => Ok(Value::Series(
            inputs
                .periods
                .iter()
                .filter_map(|t| Some((*t, s.get(t).copied().or_else(|| at(with, *t))?)))
                .collect(),
        )),
        (Func::Fill, [Value::Scalar(v), _]) => Ok(Value::Scalar(*v)),
        (Func::Max | Func::Min | Func::Sum | Func::Avg, [Value::Array(items)]) => {
            let mut times: Vec<i64> = items.iter().filter_map(timestamps).flatten().collect();
            times.sort_unstable();
            times.dedup();
            if times.is_empty() {
                let all: Vec<f64> = items.iter().filter_map(|v| at(v, 0)).collect();
                return Ok(aggregate(func, &all)
                    .map(Value::Scalar)
                    .unwrap_or(Value::Series(Series::new())));
            }
            Ok(Value::Series(
                times
                    .into_iter()
                    .filter_map(|t| {
                        let here: Vec<f64> = items.iter().filter_map(|v| at(v, t)).collect();
                        Some((t, aggregate(func, &here)?))
                    })
                    .collect(),
            ))
        }
        (Func::Max | Func::Min | Func::Sum | Func::Avg, [Value::Series(s)]) => {
            let all: Vec<f64> = s.values().copied().collect();
            Ok(aggregate(func, &all)
                .map(Value::Scalar)
                .unwrap_or(Value::Series(Series::new())))
        }
        (Func::Max | Func::Min | Func::Sum | Func::Avg, [Value::Scalar(v)]) => {
            Ok(Value::Scalar(*v))
        }
        // Each value less the one before it; the first has none.
        (Func::Diff, [Value::Series(s)]) => Ok(Value::Series(
            s.iter()
                .zip(s.iter().skip(1))
                .map(|((_, before), (t, v))| (*t, v - before))
                .collect(),
        )),
        (func, values) => Err(MathError::Arguments(format!(
            "{func:?} does not take {} such arguments",
            values.len()
        ))),
    }
}

#[cfg(test)]
mod tests;
