package store

// PlanPerCall marks a statement the cache leaves unnamed.
const PlanPerCall = planPerCall

// Fenced statements whose plans TestFencesUsePrimaryKey holds (package doc).
const (
	SQLOrderRow            = sqlOrderRow
	SQLTransition          = sqlTransition
	SQLRecordCallbacks     = sqlRecordCallbacks
	SQLUnclaimCallbacks    = sqlUnclaimCallbacks
	SQLRedeliverCallback   = sqlRedeliverCallback
	SQLRecordCancelAttempt = sqlRecordCancelAttempt
	SQLRecordRefundAttempt = sqlRecordRefundAttempt
	SQLMarkPGEvent         = sqlMarkPGEvent
	SQLCancelByID          = sqlCancelByID
	SQLOrderRowForEvent    = sqlOrderRowForEvent
	SQLStoreStatusEvent    = sqlStoreStatusEvent
)
