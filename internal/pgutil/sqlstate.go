package pgutil

// The SQLSTATE codes pgms branches on, every one of them: code that asks
// for an error class names it here rather than writing the code. Names
// follow PostgreSQL's errcodes.txt.
const (
	CodeConnectionException            = "08000"
	CodeConnectionDoesNotExist         = "08003"
	CodeConnectionFailure              = "08006"
	CodeSQLClientUnableToEstablishConn = "08001"
	CodeSQLServerRejectedEstablishment = "08004"
	CodeFeatureNotSupported            = "0A000"
	CodeInvalidSchemaName              = "3F000"
	CodeSerializationFailure           = "40001"
	CodeDeadlockDetected               = "40P01"
	CodeSyntaxError                    = "42601"
	CodeUndefinedTable                 = "42P01"
	CodeUndefinedFunction              = "42883"
	CodeUndefinedObject                = "42704"
	CodeDuplicateObject                = "42710"
	CodeDuplicateSchema                = "42P06"
	CodeObjectInUse                    = "55006"
	CodeLockNotAvailable               = "55P03" // lock_timeout expired
	CodeQueryCanceled                  = "57014" // statement_timeout or cancel
	CodeAdminShutdown                  = "57P01"
	CodeCrashShutdown                  = "57P02"
	CodeCannotConnectNow               = "57P03"
	CodeInternalError                  = "XX000"
)
