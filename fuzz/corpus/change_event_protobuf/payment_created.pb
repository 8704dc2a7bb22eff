,"*±ÂÊÛ (œç2EUR:card@àÅÈ’Ì1HàÅÈ’Ì1"3

postgresqlshoppublic"payments(ø¸0–<8àÅÈ’Ì1(ÀÉÈ’Ì1