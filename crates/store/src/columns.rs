//! How model fields are read from a column, on either backend, for the `FromRow` derives
//! of the model types.
//!
//! Most columns decode the same on both: text, integers, timestamps (`TIMESTAMPTZ` on
//! PostgreSQL; fixed-width UTC text on SQLite, which sqlx parses), JSON (`JSONB`; JSON
//! text). States and log streams are lowercase text. What is stored differently gets a
//! newtype: [`Targets`].

use sqlx::encode::IsNull;
use sqlx::error::BoxDynError;
use sqlx::postgres::{PgArgumentBuffer, PgTypeInfo, PgValueRef, Postgres};
use sqlx::sqlite::{Sqlite, SqliteArgumentsBuffer, SqliteTypeInfo, SqliteValueRef};
use sqlx::{Database, Decode, Encode, Type};

use crate::model::{Decision, DeploymentState, Stream};

/// Text columns read through `FromStr`.
macro_rules! text_column {
    ($ty:ty) => {
        impl<DB: Database> Type<DB> for $ty
        where
            str: Type<DB>,
        {
            fn type_info() -> DB::TypeInfo {
                <str as Type<DB>>::type_info()
            }

            fn compatible(ty: &DB::TypeInfo) -> bool {
                <str as Type<DB>>::compatible(ty)
            }
        }

        impl<'r, DB: Database> Decode<'r, DB> for $ty
        where
            &'r str: Decode<'r, DB>,
        {
            fn decode(value: <DB as Database>::ValueRef<'r>) -> Result<Self, BoxDynError> {
                Ok(<&'r str as Decode<'r, DB>>::decode(value)?.parse::<$ty>()?)
            }
        }
    };
}

text_column!(DeploymentState);
text_column!(Stream);
text_column!(Decision);

/// `deployments.notify`, the outbox targets: `TEXT[]` on PostgreSQL, a JSON array in
/// `TEXT` on SQLite (which has no arrays; its trigger reads them with `json_each`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Targets(pub Vec<String>);

impl From<Targets> for Vec<String> {
    fn from(targets: Targets) -> Self {
        targets.0
    }
}

impl Type<Postgres> for Targets {
    fn type_info() -> PgTypeInfo {
        <Vec<String> as Type<Postgres>>::type_info()
    }

    fn compatible(ty: &PgTypeInfo) -> bool {
        <Vec<String> as Type<Postgres>>::compatible(ty)
    }
}

impl<'r> Decode<'r, Postgres> for Targets {
    fn decode(value: PgValueRef<'r>) -> Result<Self, BoxDynError> {
        Ok(Targets(<Vec<String> as Decode<'r, Postgres>>::decode(
            value,
        )?))
    }
}

impl Encode<'_, Postgres> for Targets {
    fn encode_by_ref(&self, buf: &mut PgArgumentBuffer) -> Result<IsNull, BoxDynError> {
        <Vec<String> as Encode<'_, Postgres>>::encode_by_ref(&self.0, buf)
    }
}

impl Type<Sqlite> for Targets {
    fn type_info() -> SqliteTypeInfo {
        <str as Type<Sqlite>>::type_info()
    }

    fn compatible(ty: &SqliteTypeInfo) -> bool {
        <str as Type<Sqlite>>::compatible(ty)
    }
}

impl<'r> Decode<'r, Sqlite> for Targets {
    fn decode(value: SqliteValueRef<'r>) -> Result<Self, BoxDynError> {
        let text = <&'r str as Decode<'r, Sqlite>>::decode(value)?;
        Ok(Targets(serde_json::from_str(text)?))
    }
}

impl Encode<'_, Sqlite> for Targets {
    fn encode_by_ref(&self, buf: &mut SqliteArgumentsBuffer) -> Result<IsNull, BoxDynError> {
        <String as Encode<'_, Sqlite>>::encode(serde_json::to_string(&self.0)?, buf)
    }
}
