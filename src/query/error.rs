//! Query errors, named as Triplit names them (so the server can answer with the same `name`).

use std::fmt;

/// Which part of a query was invalid; [`QueryErrorKind::name`] is Triplit's error name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum QueryErrorKind {
    /// A missing, non-string or unknown collection name.
    InvalidCollectionName,
    /// A malformed `where`, an unknown attribute, an operator the type does not support.
    InvalidFilter,
    /// `where` is not an array.
    InvalidWhere,
    /// A bad order direction, an unknown or unsortable order path.
    InvalidOrder,
    /// A negative or non-numeric limit.
    InvalidLimit,
    /// A malformed cursor, or one that does not fit the order.
    InvalidAfter,
    /// A select path that does not exist or goes into a relation.
    InvalidSelect,
    /// An include of a relation the schema does not have.
    RelationDoesNotExist,
    /// An include of an attribute that is not a relation.
    IncludedNonRelation,
    /// An include that is neither a relation reference nor a subquery.
    InvalidInclusion,
    /// A cardinality other than `one` or `many`.
    InvalidCardinality,
    /// The query is not a JSON object, or a field has the wrong JSON type.
    InvalidQuery,
    /// The query is over the server's cost limits (filter size, nesting, rows, result size).
    TooExpensive,
}

impl QueryErrorKind {
    /// Triplit's error name for this kind.
    pub fn name(self) -> &'static str {
        match self {
            QueryErrorKind::InvalidCollectionName => "InvalidCollectionNameError",
            QueryErrorKind::InvalidFilter => "InvalidFilterError",
            QueryErrorKind::InvalidWhere => "InvalidQueryWhereError",
            QueryErrorKind::InvalidOrder => "InvalidOrderClauseError",
            QueryErrorKind::InvalidLimit => "InvalidQueryLimitError",
            QueryErrorKind::InvalidAfter => "InvalidQueryAfterError",
            QueryErrorKind::InvalidSelect => "InvalidSelectClauseError",
            QueryErrorKind::RelationDoesNotExist => "RelationDoesNotExistError",
            QueryErrorKind::IncludedNonRelation => "IncludedNonRelationError",
            QueryErrorKind::InvalidInclusion => "InvalidQueryInclusionError",
            QueryErrorKind::InvalidCardinality => "InvalidQueryCardinalityError",
            QueryErrorKind::InvalidQuery => "InvalidQueryError",
            QueryErrorKind::TooExpensive => "QueryTooExpensiveError",
        }
    }
}

impl fmt::Display for QueryErrorKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

pub(crate) fn query_error(kind: QueryErrorKind, message: impl Into<String>) -> crate::Error {
    crate::Error::Query { kind, message: message.into() }
}
